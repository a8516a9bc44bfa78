import java.lang.reflect.Field;

/** Crashes the JVM with SIGSEGV: sun.misc.Unsafe.putAddress(0, 0). */
public final class Segv {
    public static void main(String[] args) throws Exception {
        Field f = sun.misc.Unsafe.class.getDeclaredField("theUnsafe");
        f.setAccessible(true);
        sun.misc.Unsafe u = (sun.misc.Unsafe) f.get(null);
        Thread.sleep(300); // a few heartbeats first
        System.out.println("crashing");
        System.out.flush();
        u.putAddress(0, 0);
    }
}
