import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;

/**
 * The workload `jvmwatch demo` runs under the agent: a few worker threads that allocate
 * garbage and keep a sliding cache, so there are GC pauses, heap movement and threads in
 * several states to look at. Usage: JvmwatchDemo [seconds] (0 = until killed).
 */
public final class JvmwatchDemo {
    public static void main(String[] args) throws Exception {
        long seconds = args.length > 0 ? Long.parseLong(args[0]) : 5;
        long end = seconds == 0 ? Long.MAX_VALUE : System.nanoTime() + seconds * 1_000_000_000L;
        Object lock = new Object();
        List<Thread> workers = new ArrayList<>();
        for (int t = 0; t < 3; t++) {
            Thread w = new Thread(() -> churn(end), "demo-worker-" + t);
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

    private static void churn(long end) {
        List<byte[]> cache = new ArrayList<>();
        ThreadLocalRandom rnd = ThreadLocalRandom.current();
        while (System.nanoTime() < end) {
            for (int i = 0; i < 2000; i++) {
                byte[] b = new byte[rnd.nextInt(64, 4096)];
                if (i % 50 == 0) {
                    cache.add(b);
                }
            }
            if (cache.size() > 20_000) {
                cache.subList(0, 10_000).clear();
            }
            try {
                Thread.sleep(1);
            } catch (InterruptedException e) {
                return;
            }
        }
    }
}
