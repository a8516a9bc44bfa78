import io.jvmwatch.Counter;
import io.jvmwatch.Gauge;
import io.jvmwatch.Jvmwatch;
import io.jvmwatch.Timer;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.ArrayList;
import java.util.List;

/**
 * One compact run for the JDK matrix (Java 11 source level): records known application
 * metrics (1000 orders, 1000 latencies of i × 10 µs, queue depth 42, a deploy event),
 * then collects (allocation, then System.gc(), every 50 ms) until a line or the end of stdin,
 * and exits normally. Prints "ready active=<bool>" after the first round.
 */
public final class Matrix {
    static volatile Object sink;

    public static void main(String[] args) throws Exception {
        Counter orders = Jvmwatch.counter("orders", "route", "/checkout");
        Timer latency = Jvmwatch.timer("latency", "route", "/checkout");
        Gauge queue = Jvmwatch.gauge("queue.depth");
        for (int i = 1; i <= 1000; i++) {
            orders.increment();
            latency.record(i * 10_000L);
        }
        queue.set(42);
        Jvmwatch.event("deploy", "v1.2.3");
        // Collect (allocation, then System.gc()) until stdin ends: the test waits until the
        // ring shows what it needs (the monitor registers its GC listener on its own thread,
        // so the first collections may happen before it listens).
        Thread stop = new Thread(() -> {
            try {
                new BufferedReader(new InputStreamReader(System.in)).readLine();
            } catch (Exception e) {
                // end of input either way
            }
        }, "stdin");
        stop.setDaemon(true);
        stop.start();
        List<byte[]> keep = new ArrayList<>();
        boolean ready = false;
        while (stop.isAlive()) {
            long before = gcCount();
            while (gcCount() < before + 1) {
                for (int i = 0; i < 10_000; i++) {
                    byte[] b = new byte[1024];
                    sink = b;
                    if (i % 100 == 0) {
                        keep.add(b);
                    }
                }
                if (keep.size() > 5_000) {
                    keep.clear();
                }
            }
            System.gc();
            if (!ready) {
                System.out.println("ready active=" + Jvmwatch.active());
                System.out.flush();
                ready = true;
            }
            stop.join(50);
        }
    }

    private static long gcCount() {
        long n = 0;
        for (java.lang.management.GarbageCollectorMXBean gc : java.lang.management.ManagementFactory.getGarbageCollectorMXBeans()) {
            n += Math.max(0, gc.getCollectionCount());
        }
        return n;
    }
}
