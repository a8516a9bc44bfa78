import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;

/** What every bench workload does at start: a safety exit, and the MXBean poller when asked. */
final class BenchSupport {
    private BenchSupport() {}

    /**
     * {@code -Dbench.maxMs=N}: halt after N ms whatever happens (default 120 s), so a workload
     * whose harness died never runs on. {@code -Dbench.mxpoll=MS}: start {@link MxPoller}.
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
    }

    /** " gcs=N gc_ms=N" from the GC beans (read once, after the measurement). */
    static String gcSummary() {
        long n = 0;
        long ms = 0;
        for (GarbageCollectorMXBean b : ManagementFactory.getGarbageCollectorMXBeans()) {
            n += Math.max(0, b.getCollectionCount());
            ms += Math.max(0, b.getCollectionTime());
        }
        return " gcs=" + n + " gc_ms=" + ms;
    }
}
