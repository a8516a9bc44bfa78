import java.util.concurrent.locks.LockSupport;

/**
 * Starts args[0] threads that park (each a few frames deep), prints "ready", then idles.
 *
 * <p>Also starts {@code floor-wakeups}: a thread that only wakes every 100 ms (the agent's
 * default sampling interval) and does nothing. Its CPU per wake-up is what any periodic
 * sampler pays in this JVM on this machine before doing any work (bench section 11).
 */
public final class Threads {
    public static void main(String[] args) throws Exception {
        Thread floor = new Thread(Threads::wakeEvery100ms, "floor-wakeups");
        floor.setDaemon(true);
        floor.start();
        int n = Integer.parseInt(args[0]);
        for (int i = 0; i < n; i++) {
            Thread t = new Thread(() -> depth(8), "parked-" + i);
            t.setDaemon(true);
            t.start();
        }
        System.out.println("ready");
        System.out.flush();
        while (true) {
            Thread.sleep(1000);
        }
    }

    private static void wakeEvery100ms() {
        long next = System.nanoTime();
        do {
            next += 100_000_000L;
        } while (BenchSupport.sleepUntil(next));
    }

    private static void depth(int d) {
        if (d > 0) {
            depth(d - 1);
        } else {
            while (true) {
                LockSupport.park();
            }
        }
    }
}
