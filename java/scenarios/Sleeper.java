/**
 * Keeps writing events until killed: short-lived threads (thread_start/thread_end) and
 * allocation (GC pauses). Prints "ready" once running.
 */
public final class Sleeper {
    static volatile Object sink;

    public static void main(String[] args) throws Exception {
        System.out.println("ready");
        System.out.flush();
        int n = 0;
        while (true) {
            Thread t = new Thread(() -> {
                for (int i = 0; i < 2_000; i++) {
                    sink = new byte[512];
                }
            }, "short-" + (n++));
            t.start();
            t.join();
            Thread.sleep(2);
        }
    }
}
