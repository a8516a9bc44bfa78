import io.jvmwatch.Counter;
import io.jvmwatch.Gauge;
import io.jvmwatch.Jvmwatch;
import io.jvmwatch.Timer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;

/**
 * The workload `jvmwatch demo` runs under the agent: worker threads that "serve requests"
 * (allocate garbage, keep a sliding cache, take a few ms each) and record what an application
 * would through the io.jvmwatch API — request count, latency, errors, queue depth — so there
 * are GC pauses, heap movement, threads in several states and app metrics to look at.
 * Usage: JvmwatchDemo [seconds] (0 = until stopped).
 */
public final class JvmwatchDemo {
    static final Counter REQUESTS = Jvmwatch.counter("http.requests", "route", "/orders");
    static final Counter ERRORS = Jvmwatch.counter("http.errors", "route", "/orders");
    static final Timer LATENCY = Jvmwatch.timer("http.latency", "route", "/orders");
    static final Gauge QUEUE = Jvmwatch.gauge("queue.depth");

    public static void main(String[] args) throws Exception {
        long seconds = args.length > 0 ? Long.parseLong(args[0]) : 5;
        long end = seconds == 0 ? Long.MAX_VALUE : System.nanoTime() + seconds * 1_000_000_000L;
        Jvmwatch.event("deploy", "demo v1");
        Object lock = new Object();
        List<Thread> workers = new ArrayList<>();
        for (int t = 0; t < 3; t++) {
            Thread w = new Thread(() -> serve(end), "demo-worker-" + t);
            w.start();
            workers.add(w);
        }
        Thread idle = new Thread(() -> {
            synchronized (lock) {
                try {
                    lock.wait();
                } catch (InterruptedException e) {
                    // exit
                }
            }
        }, "demo-idle");
        idle.setDaemon(true);
        idle.start();
        for (Thread w : workers) {
            w.join();
        }
    }

    private static void serve(long end) {
        List<byte[]> cache = new ArrayList<>();
        ThreadLocalRandom rnd = ThreadLocalRandom.current();
        while (System.nanoTime() < end) {
            long t0 = System.nanoTime();
            int work = rnd.nextInt(200, 3000);
            for (int i = 0; i < work; i++) {
                byte[] b = new byte[rnd.nextInt(64, 4096)];
                if (i % 50 == 0) {
                    cache.add(b);
                }
            }
            if (cache.size() > 20_000) {
                cache.subList(0, 10_000).clear();
            }
            QUEUE.set(rnd.nextInt(0, 20));
            try {
                Thread.sleep(rnd.nextInt(0, 3));
            } catch (InterruptedException e) {
                return;
            }
            REQUESTS.increment();
            if (rnd.nextInt(100) == 0) {
                ERRORS.increment();
            }
            LATENCY.record(System.nanoTime() - t0);
        }
    }
}
