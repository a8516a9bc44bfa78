/**
 * A mostly idle service for the sidecar load test: a little allocation every 100 ms (so there
 * are occasional GC pauses and a moving heap), otherwise asleep. Prints "ready".
 */
public final class IdleService {
    static volatile Object sink;

    public static void main(String[] args) throws Exception {
        BenchSupport.start();
        System.out.println("ready");
        System.out.flush();
        while (true) {
            for (int i = 0; i < 100; i++) {
                sink = new byte[10_000];
            }
            Thread.sleep(100);
        }
    }
}
