import io.jvmwatch.Jvmwatch;

/**
 * Emits 200 application events with distinct names (e0 .. e199) before the first collection,
 * then collects twice (System.gc()), so the in-VM monitor has to intern its collector, cause
 * and pool names after the application's names.
 */
public final class EventNames {
    public static void main(String[] args) throws Exception {
        Thread.sleep(300); // let the monitor subscribe to GC notifications
        for (int i = 0; i < 200; i++) {
            Jvmwatch.event("e" + i, "d" + i);
        }
        System.gc();
        System.gc();
        Thread.sleep(500); // GC notifications are delivered asynchronously
        System.out.println("events done");
    }
}
