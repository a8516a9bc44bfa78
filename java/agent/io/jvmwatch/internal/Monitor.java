package io.jvmwatch.internal;

import java.lang.management.BufferPoolMXBean;
import java.lang.management.ClassLoadingMXBean;
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadInfo;
import java.lang.management.ThreadMXBean;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;

import java.util.Set;
import javax.management.Notification;
import javax.management.NotificationEmitter;
import javax.management.openmbean.CompositeData;
import javax.management.openmbean.TabularData;

/**
 * The in-VM monitoring program, started by the agent at VM init on the daemon thread
 * "jvmwatch-monitor". It sees what JVMTI alone cannot and writes it through {@link Bridge}:
 *
 * <ul>
 *   <li>every GC notification (collector, cause, action, duration, heap before/after, per heap
 *       pool before/after) — concurrent cycles of ZGC/Shenandoah/G1 included, flagged as
 *       concurrent so their time never counts as pause time;
 *   <li>deadlocks ({@code ThreadMXBean.findDeadlockedThreads}, every 5 s: it stops the JVM at a
 *       safepoint), once per deadlock, one event per thread with the lock owner;
 *   <li>class loading totals and direct/mapped buffer pools, as gauges.
 * </ul>
 *
 * Uses only java.management (javax.management.openmbean reads the GC notification), no
 * com.sun.* API. If it cannot start, the agent keeps its JVMTI data and writes a warning.
 */
public final class Monitor implements Runnable {
    private static final String GC_NOTIFICATION = "com.sun.management.gc.notification";

    private Monitor() {}

    /** Starts the monitor thread; called once by the agent. */
    public static void start() {
        Thread t = new Thread(new Monitor(), "jvmwatch-monitor");
        t.setDaemon(true);
        t.setPriority(Thread.MIN_PRIORITY);
        t.start();
    }

    @Override
    public void run() {
        try {
            String app = System.getProperty("jvmwatch.app");
            if (app != null && !app.isEmpty()) {
                Bridge.app(app);
            }
            listenToGc();
            loop();
        } catch (Throwable t) {
            Bridge.warn("monitor stopped: " + t.getClass().getSimpleName());
        }
    }

    private static void listenToGc() {
        for (GarbageCollectorMXBean gc : ManagementFactory.getGarbageCollectorMXBeans()) {
            if (gc instanceof NotificationEmitter) {
                ((NotificationEmitter) gc).addNotificationListener(Monitor::onGc, null, null);
            }
        }
    }

    private static long used(Object usage) {
        return usage instanceof CompositeData ? ((Number) ((CompositeData) usage).get("used")).longValue() : 0;
    }

    private static void onGc(Notification n, Object handback) {
        try {
            if (!GC_NOTIFICATION.equals(n.getType()) || !(n.getUserData() instanceof CompositeData)) {
                return;
            }
            CompositeData cd = (CompositeData) n.getUserData();
            String name = (String) cd.get("gcName");
            String action = (String) cd.get("gcAction");
            String cause = (String) cd.get("gcCause");
            CompositeData info = (CompositeData) cd.get("gcInfo");
            int id = (int) ((Number) info.get("id")).longValue();
            long durationMs = ((Number) info.get("duration")).longValue();
            TabularData before = (TabularData) info.get("memoryUsageBeforeGc");
            TabularData after = (TabularData) info.get("memoryUsageAfterGc");
            Set<String> heapPools = heapPools();
            long heapBefore = 0;
            long heapAfter = 0;
            List<Object[]> pools = new ArrayList<>();
            for (Object row : before.values()) {
                CompositeData r = (CompositeData) row;
                String pool = (String) r.get("key");
                if (!heapPools.contains(pool)) {
                    continue;
                }
                long b = used(r.get("value"));
                CompositeData ar = after.get(new Object[] {pool});
                long a = ar == null ? b : used(ar.get("value"));
                heapBefore += b;
                heapAfter += a;
                pools.add(new Object[] {pool, b, a});
            }
            // JDK 11-16 ZGC has one bean, "ZGC", for its whole (mostly concurrent) cycles; from
            // JDK 17 on they are "ZGC Cycles" and "ZGC Pauses". Its pauses come from JVMTI.
            boolean concurrent = name.contains("Cycles") || name.contains("Concurrent")
                    || action.contains("concurrent") || name.equals("ZGC");
            Bridge.gcCycle(id, durationMs * 1000, Bridge.intern(name), Bridge.intern(cause),
                    Bridge.intern(action), concurrent, heapBefore, heapAfter);
            for (Object[] p : pools) {
                Bridge.gcPool(id, Bridge.intern((String) p[0]), (Long) p[1], (Long) p[2]);
            }
        } catch (Throwable t) {
            Bridge.warn("gc notification: " + t.getClass().getSimpleName());
        }
    }

    private static Set<String> heapPoolNames;

    private static synchronized Set<String> heapPools() {
        if (heapPoolNames == null) {
            Set<String> s = new HashSet<>();
            ManagementFactory.getMemoryPoolMXBeans().forEach(p -> {
                if (p.getType() == java.lang.management.MemoryType.HEAP) {
                    s.add(p.getName());
                }
            });
            heapPoolNames = s;
        }
        return heapPoolNames;
    }

    private static void loop() throws InterruptedException {
        ThreadMXBean threads = ManagementFactory.getThreadMXBean();
        ClassLoadingMXBean classes = ManagementFactory.getClassLoadingMXBean();
        List<BufferPoolMXBean> buffers = ManagementFactory.getPlatformMXBeans(BufferPoolMXBean.class);
        // Monotonic JVM totals, registered as counters (kind 1) and mirrored with gaugeSet.
        int loaded = Bridge.register(1, "jvm.classes.loaded");
        int unloaded = Bridge.register(1, "jvm.classes.unloaded");
        int[][] buf = new int[buffers.size()][];
        for (int i = 0; i < buf.length; i++) {
            String n = buffers.get(i).getName();
            buf[i] = new int[] {Bridge.register(2, "jvm.buffer_pool.used_bytes{pool=" + n + "}"),
                Bridge.register(2, "jvm.buffer_pool.used_buffers{pool=" + n + "}")};
        }
        Set<Long> reported = new HashSet<>();
        boolean warnedOom = false;
        for (long tick = 0;; tick++) {
            // An OutOfMemoryError (the application filled the heap) skips this tick, it does
            // not end the monitor: the next tick tries again.
            try {
                tick(threads, classes, buffers, loaded, unloaded, buf, reported, tick);
            } catch (OutOfMemoryError e) {
                if (!warnedOom) {
                    warnedOom = true;
                    Bridge.warn("monitor: OutOfMemoryError; retrying");
                }
            }
            Thread.sleep(1000);
        }
    }

    private static void tick(ThreadMXBean threads, ClassLoadingMXBean classes, List<BufferPoolMXBean> buffers,
            int loaded, int unloaded, int[][] buf, Set<Long> reported, long tick) {
        // findDeadlockedThreads runs a safepoint operation: every 5 s, not every second.
        long[] dead = tick % 5 == 0 ? threads.findDeadlockedThreads() : null;
        if (dead != null) {
            Arrays.sort(dead);
            ThreadInfo[] infos = threads.getThreadInfo(dead);
            boolean fresh = false;
            for (long id : dead) {
                fresh |= reported.add(id);
            }
            if (fresh) {
                for (int i = 0; i < infos.length; i++) {
                    ThreadInfo ti = infos[i];
                    if (ti != null) {
                        Bridge.deadlock(infos.length, i, ti.getThreadName() + " > " + ti.getLockOwnerName());
                    }
                }
            }
        }
        if (loaded >= 0) {
            Bridge.gaugeSet(loaded, classes.getTotalLoadedClassCount());
        }
        if (unloaded >= 0) {
            Bridge.gaugeSet(unloaded, classes.getUnloadedClassCount());
        }
        for (int i = 0; i < buf.length; i++) {
            if (buf[i][0] >= 0) {
                Bridge.gaugeSet(buf[i][0], buffers.get(i).getMemoryUsed());
            }
            if (buf[i][1] >= 0) {
                Bridge.gaugeSet(buf[i][1], buffers.get(i).getCount());
            }
        }
    }

}
