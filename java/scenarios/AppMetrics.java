import io.jvmwatch.Counter;
import io.jvmwatch.Gauge;
import io.jvmwatch.Jvmwatch;
import io.jvmwatch.Timer;

/**
 * Records known application metrics through the io.jvmwatch API: 1000 orders, 100 × 17 bytes,
 * queue depth 42, 1000 latencies of i × 10 µs (i = 1..1000), and a deploy event. Prints
 * "bucket V I" lines (the API's bucket function, to compare with the sidecar's), then
 * "recorded active=<bool>". With the argument "hold" it then waits to be killed.
 */
public final class AppMetrics {
    public static void main(String[] args) throws Exception {
        Counter orders = Jvmwatch.counter("orders", "route", "/checkout");
        Counter bytes = Jvmwatch.counter("bytes.sent");
        Gauge queue = Jvmwatch.gauge("queue.depth");
        Timer latency = Jvmwatch.timer("latency", "route", "/checkout");
        Thread[] workers = new Thread[4];
        for (int t = 0; t < workers.length; t++) {
            final int from = t * 250;
            workers[t] = new Thread(() -> {
                for (int i = from + 1; i <= from + 250; i++) {
                    orders.increment();
                    latency.record(i * 10_000L);
                }
            });
            workers[t].start();
        }
        for (Thread w : workers) {
            w.join();
        }
        for (int i = 0; i < 100; i++) {
            bytes.add(17);
        }
        queue.set(42);
        Jvmwatch.event("deploy", "v1.2.3");
        for (long v : new long[] {0, 1, 1023, 1024, 1279, 1280, 2047, 2048, 999_999, 1_000_000, 5_000_000, 123_456_789, Long.MAX_VALUE}) {
            System.out.println("bucket " + v + " " + Jvmwatch.bucketOf(v));
        }
        System.out.println("recorded active=" + Jvmwatch.active());
        System.out.flush();
        if (args.length > 0 && args[0].equals("hold")) {
            Thread.sleep(Long.MAX_VALUE);
        }
    }
}
