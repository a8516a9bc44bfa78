import java.util.ArrayList;
import java.util.List;

/**
 * Fills the heap (run with a small -Xmx) until even small allocations fail, holds it full for
 * 1.5 s (the agent's sampler then fails to allocate too), releases it, collects and prints
 * "released <epoch ms>", then keeps running for a while (default 1500 ms) so the sampler can
 * recover.
 */
public final class OomRecover {
    static List<Object> hog;
    static int ooms;
    static long taken;

    public static void main(String[] args) throws Exception {
        long after = args.length > 0 ? Long.parseLong(args[0]) : 1500;
        Thread.sleep(300); // a few good samples first
        fillAndHold();
        hog = null;
        System.gc();
        System.out.println("released " + System.currentTimeMillis() + " ooms " + ooms + " taken " + taken);
        System.out.flush();
        Thread.sleep(after);
        System.out.println("done");
    }

    /**
     * Never throws: every OutOfMemoryError (wherever it hits) is counted and swallowed. The
     * heap is held in a linked chain (no growing backing array whose failed copy would free
     * room again), filled with ever smaller pieces down to 16 bytes.
     */
    static void fillAndHold() {
        try {
            Object[] chain = null;
            int[] sizes = {1 << 20, 64 * 1024, 1024, 16};
            for (int size : sizes) {
                try {
                    while (true) {
                        chain = new Object[] {chain, new byte[size]};
                    }
                } catch (OutOfMemoryError e) {
                    ooms++;
                }
            }
            // Hold it full: whatever the collector frees is taken again at once.
            long holdUntil = System.nanoTime() + 1_500_000_000L;
            while (System.nanoTime() < holdUntil) {
                try {
                    chain = new Object[] {chain, new byte[16]};
                    taken++;
                } catch (OutOfMemoryError e) {
                    ooms++;
                }
            }
            hog = java.util.Collections.singletonList(chain);
        } catch (Throwable t) {
            ooms++;
        }
    }
}
