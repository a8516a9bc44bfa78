import java.util.ArrayList;
import java.util.List;

/**
 * Allocates for a while (default 1500 ms) with some retained data, then calls System.gc()
 * (args: [ms] [systemGcs], default once; 100 ms apart when more).
 */
public final class GcChurn {
    static volatile Object sink;

    public static void main(String[] args) throws Exception {
        long ms = args.length > 0 ? Long.parseLong(args[0]) : 1500;
        int systemGcs = args.length > 1 ? Integer.parseInt(args[1]) : 1;
        long end = System.nanoTime() + ms * 1_000_000L;
        List<byte[]> keep = new ArrayList<>();
        while (System.nanoTime() < end) {
            for (int i = 0; i < 10_000; i++) {
                byte[] b = new byte[1024];
                sink = b;
                if (i % 100 == 0) {
                    keep.add(b);
                }
            }
            if (keep.size() > 5_000) {
                keep.clear();
            }
        }
        for (int i = 0; i < systemGcs; i++) {
            if (i > 0) {
                Thread.sleep(100);
            }
            System.gc();
        }
        Thread.sleep(250); // let the sampler write a snapshot after the collection
        System.out.println("churn done");
    }
}
