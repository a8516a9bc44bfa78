import java.util.concurrent.locks.LockSupport;

/** Starts args[0] threads that park (each a few frames deep), prints "ready", then idles. */
public final class Threads {
    public static void main(String[] args) throws Exception {
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
