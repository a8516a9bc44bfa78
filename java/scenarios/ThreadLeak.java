import java.util.concurrent.locks.LockSupport;

/** Starts a thread that parks forever every args[0] ms (default 50): a thread leak. */
public final class ThreadLeak {
    public static void main(String[] args) throws Exception {
        long ms = args.length > 0 ? Long.parseLong(args[0]) : 50;
        System.out.println("leaking threads");
        System.out.flush();
        for (int i = 0; ; i++) {
            Thread t = new Thread(() -> {
                while (true) {
                    LockSupport.park();
                }
            }, "leaked-" + i);
            t.setDaemon(true);
            t.start();
            Thread.sleep(ms);
        }
    }
}
