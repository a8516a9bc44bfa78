import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;

/** What every bench workload does at start: a safety exit, and the MXBean poller when asked. */
final class BenchSupport {
    private BenchSupport() {}

    /**
     * {@code -Dbench.maxMs=N}: halt after N ms whatever happens (default 120 s), so a workload
     * whose harness died never runs on. {@code -Dbench.mxpoll=MS}: start {@link MxPoller}.
     * {@code -Dbench.gcnotify=true}: see {@link #listenToGc}.
     */
    static void start() {
        long maxMs = Long.getLong("bench.maxMs", 120_000L);
        Thread guard = new Thread(() -> {
            try {
                Thread.sleep(maxMs);
            } catch (InterruptedException e) {
                return;
            }
            System.err.println("bench workload: bench.maxMs=" + maxMs + " reached, halting");
            Runtime.getRuntime().halt(3);
        }, "bench-safety-exit");
        guard.setDaemon(true);
        guard.start();
        long poll = Long.getLong("bench.mxpoll", 0L);
        if (poll > 0) {
            MxPoller.start(poll);
        }
        if (Boolean.getBoolean("bench.gcnotify")) {
            listenToGc();
        }
    }

    /**
     * {@code -Dbench.gcnotify=true}: a no-op listener on every GC bean, as Micrometer's
     * JvmGcMetrics registers; with a listener the JVM builds a GcInfo notification per collection.
     * A diagnostic (not one of the harness's configurations).
     */
    private static void listenToGc() {
        for (GarbageCollectorMXBean b : ManagementFactory.getGarbageCollectorMXBeans()) {
            if (b instanceof javax.management.NotificationEmitter) {
                ((javax.management.NotificationEmitter) b).addNotificationListener((n, h) -> { }, null, null);
            }
        }
    }

    /**
     * Sleeps until {@code deadline} ({@link System#nanoTime()}); at once when it has passed.
     * False when interrupted: the caller's periodic loop then ends.
     */
    static boolean sleepUntil(long deadline) {
        long wait = deadline - System.nanoTime();
        if (wait <= 0) {
            return true;
        }
        try {
            Thread.sleep(wait / 1_000_000L, (int) (wait % 1_000_000L));
            return true;
        } catch (InterruptedException e) {
            return false;
        }
    }

    /** {collections, collection ms} summed over the GC beans. */
    static long[] gcCounts() {
        long n = 0;
        long ms = 0;
        for (GarbageCollectorMXBean b : ManagementFactory.getGarbageCollectorMXBeans()) {
            n += Math.max(0, b.getCollectionCount());
            ms += Math.max(0, b.getCollectionTime());
        }
        return new long[] {n, ms};
    }
}
