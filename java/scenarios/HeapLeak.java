import java.util.ArrayList;
import java.util.List;

/**
 * Leaks heap at a steady rate (args[0] KiB per 50 ms, default 40) while churning garbage so
 * that young collections happen often, until it runs out of memory.
 */
public final class HeapLeak {
    static volatile Object sink;

    public static void main(String[] args) throws Exception {
        int kib = args.length > 0 ? Integer.parseInt(args[0]) : 40;
        List<byte[]> leak = new ArrayList<>();
        System.out.println("leaking");
        System.out.flush();
        while (true) {
            for (int i = 0; i < kib / 8; i++) {
                leak.add(new byte[8 * 1024]);
            }
            for (int i = 0; i < 256; i++) {
                sink = new byte[4 * 1024];
            }
            Thread.sleep(50);
        }
    }
}
