/** Two threads, "Deadlock-A" and "Deadlock-B", deadlock on two monitors; runs until killed. */
public final class Deadlock {
    public static void main(String[] args) throws Exception {
        Object first = new Object();
        Object second = new Object();
        Thread a = new Thread(() -> lock(first, second), "Deadlock-A");
        Thread b = new Thread(() -> lock(second, first), "Deadlock-B");
        a.start();
        b.start();
        System.out.println("started");
        System.out.flush();
        a.join();
    }

    private static void lock(Object x, Object y) {
        synchronized (x) {
            try {
                Thread.sleep(200);
            } catch (InterruptedException e) {
                return;
            }
            synchronized (y) {
                System.out.println("unreachable");
            }
        }
    }
}
