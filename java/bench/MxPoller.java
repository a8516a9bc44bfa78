import java.lang.management.BufferPoolMXBean;
import java.lang.management.ClassLoadingMXBean;
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.lang.management.MemoryMXBean;
import java.lang.management.MemoryPoolMXBean;
import java.lang.management.MemoryUsage;
import java.lang.management.OperatingSystemMXBean;
import java.lang.management.ThreadInfo;
import java.lang.management.ThreadMXBean;
import java.util.EnumMap;
import java.util.Map;

/**
 * An in-process MXBean poller: every {@code periodMs} it reads what Prometheus' JVM exporters
 * (client_java's DefaultExports, jmx_exporter's JVM collectors) read on each scrape and renders
 * it as Prometheus text: heap and non-heap usage, every memory pool, every GC bean, thread
 * counts, thread states ({@code getThreadInfo(allIds, 0)}), deadlock detection
 * ({@code findDeadlockedThreads}, {@code findMonitorDeadlockedThreads}), class loading, process
 * CPU time, buffer pools. The text is dropped; the cost is the point.
 */
final class MxPoller {
    static volatile int lastLength;

    private MxPoller() {}

    static void start(long periodMs) {
        Thread t = new Thread(() -> run(periodMs), "mx-poller");
        t.setDaemon(true);
        t.start();
    }

    private static void run(long periodMs) {
        long next = System.nanoTime();
        while (true) {
            lastLength = scrape().length();
            next += periodMs * 1_000_000L;
            if (next - System.nanoTime() <= 0) {
                next = System.nanoTime(); // behind: no catching up
            } else if (!BenchSupport.sleepUntil(next)) {
                return;
            }
        }
    }

    static String scrape() {
        StringBuilder sb = new StringBuilder(8192);
        MemoryMXBean mem = ManagementFactory.getMemoryMXBean();
        usage(sb, "jvm_memory_bytes", "area=\"heap\"", mem.getHeapMemoryUsage());
        usage(sb, "jvm_memory_bytes", "area=\"nonheap\"", mem.getNonHeapMemoryUsage());
        for (MemoryPoolMXBean p : ManagementFactory.getMemoryPoolMXBeans()) {
            String l = "pool=\"" + p.getName() + "\"";
            usage(sb, "jvm_memory_pool_bytes", l, p.getUsage());
            MemoryUsage c = p.getCollectionUsage();
            if (c != null) {
                usage(sb, "jvm_memory_pool_collection_bytes", l, c);
            }
        }
        for (GarbageCollectorMXBean g : ManagementFactory.getGarbageCollectorMXBeans()) {
            String l = "gc=\"" + g.getName() + "\"";
            line(sb, "jvm_gc_collection_seconds_count", l, g.getCollectionCount());
            line(sb, "jvm_gc_collection_seconds_sum", l, g.getCollectionTime() / 1000.0);
        }
        ThreadMXBean th = ManagementFactory.getThreadMXBean();
        line(sb, "jvm_threads_current", "", th.getThreadCount());
        line(sb, "jvm_threads_daemon", "", th.getDaemonThreadCount());
        line(sb, "jvm_threads_peak", "", th.getPeakThreadCount());
        line(sb, "jvm_threads_started_total", "", th.getTotalStartedThreadCount());
        long[] dl = th.findDeadlockedThreads();
        line(sb, "jvm_threads_deadlocked", "", dl == null ? 0 : dl.length);
        long[] dlm = th.findMonitorDeadlockedThreads();
        line(sb, "jvm_threads_deadlocked_monitor", "", dlm == null ? 0 : dlm.length);
        Map<Thread.State, Integer> states = new EnumMap<>(Thread.State.class);
        for (ThreadInfo ti : th.getThreadInfo(th.getAllThreadIds(), 0)) {
            if (ti != null) {
                states.merge(ti.getThreadState(), 1, Integer::sum);
            }
        }
        for (Thread.State s : Thread.State.values()) {
            line(sb, "jvm_threads_state", "state=\"" + s + "\"", states.getOrDefault(s, 0));
        }
        ClassLoadingMXBean cl = ManagementFactory.getClassLoadingMXBean();
        line(sb, "jvm_classes_currently_loaded", "", cl.getLoadedClassCount());
        line(sb, "jvm_classes_loaded_total", "", cl.getTotalLoadedClassCount());
        line(sb, "jvm_classes_unloaded_total", "", cl.getUnloadedClassCount());
        OperatingSystemMXBean os = ManagementFactory.getOperatingSystemMXBean();
        if (os instanceof com.sun.management.UnixOperatingSystemMXBean) {
            var u = (com.sun.management.UnixOperatingSystemMXBean) os;
            line(sb, "process_cpu_seconds_total", "", u.getProcessCpuTime() / 1e9);
            line(sb, "process_open_fds", "", u.getOpenFileDescriptorCount());
            line(sb, "process_max_fds", "", u.getMaxFileDescriptorCount());
        }
        line(sb, "process_start_time_seconds", "", ManagementFactory.getRuntimeMXBean().getStartTime() / 1000.0);
        for (BufferPoolMXBean b : ManagementFactory.getPlatformMXBeans(BufferPoolMXBean.class)) {
            String l = "pool=\"" + b.getName() + "\"";
            line(sb, "jvm_buffer_pool_used_bytes", l, b.getMemoryUsed());
            line(sb, "jvm_buffer_pool_capacity_bytes", l, b.getTotalCapacity());
            line(sb, "jvm_buffer_pool_used_buffers", l, b.getCount());
        }
        return sb.toString();
    }

    private static void usage(StringBuilder sb, String name, String labels, MemoryUsage u) {
        line(sb, name + "_used", labels, u.getUsed());
        line(sb, name + "_committed", labels, u.getCommitted());
        line(sb, name + "_max", labels, u.getMax());
        line(sb, name + "_init", labels, u.getInit());
    }

    private static void line(StringBuilder sb, String name, String labels, double v) {
        sb.append(name);
        if (!labels.isEmpty()) {
            sb.append('{').append(labels).append('}');
        }
        sb.append(' ').append(v).append('\n');
    }
}
