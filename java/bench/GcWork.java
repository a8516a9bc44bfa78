/**
 * GC-heavy allocation workload: {@code threads} threads run {@link Alloc#loop}. After
 * {@code warmupMs} it counts ops for {@code measureMs} and prints one line
 * {@code RESULT ops=N nanos=N gcs=N gc_ms=N} (collections and their time inside the window,
 * from the GC beans), then exits.
 *
 * <p>Args: threads warmupMs measureMs [churnMs] [keepPerThread]. {@code warmupMs = marks}: the
 * harness times the run instead: for every line it writes to standard input this prints
 * {@code MARK ops=N nanos=N gcs=N gc_ms=N} (totals so far, nanos = System.nanoTime()); it exits
 * when standard input closes. {@code measureMs <= 0}: run until
 * killed (bounded by bench.maxMs). {@code churnMs > 0}: also start a short-lived thread every
 * churnMs (thread start/end events for the crash-survival runs).
 */
public final class GcWork {
    private GcWork() {}

    public static void main(String[] a) throws Exception {
        int threads = Integer.parseInt(a[0]);
        if (a[1].equals("marks")) {
            marks(threads);
            return;
        }
        long warmupMs = Long.parseLong(a[1]);
        long measureMs = Long.parseLong(a[2]);
        long churnMs = a.length > 3 ? Long.parseLong(a[3]) : 0;
        int keep = a.length > 4 ? Integer.parseInt(a[4]) : 8192;
        BenchSupport.start();
        var counts = Alloc.start(threads, keep);
        if (churnMs > 0) {
            Thread churn = new Thread(() -> churn(churnMs), "churn");
            churn.setDaemon(true);
            churn.start();
        }
        System.out.println("STARTED");
        System.out.flush();
        if (measureMs <= 0) {
            Thread.sleep(Long.MAX_VALUE);
        }
        Thread.sleep(warmupMs);
        long[] g0 = BenchSupport.gcCounts(); // outside the window: loads java.management
        long o0 = Alloc.sum(counts);
        long t0 = System.nanoTime();
        Thread.sleep(measureMs);
        long o1 = Alloc.sum(counts);
        long t1 = System.nanoTime();
        Alloc.stop = true;
        long[] g1 = BenchSupport.gcCounts();
        System.out.println("RESULT ops=" + (o1 - o0) + " nanos=" + (t1 - t0) + " gcs=" + (g1[0] - g0[0])
                + " gc_ms=" + (g1[1] - g0[1]));
        System.out.flush();
        System.exit(0);
    }

    private static void marks(int threads) throws Exception {
        BenchSupport.start();
        BenchSupport.gcCounts(); // loads java.management before any window
        var counts = Alloc.start(threads, 8192);
        System.out.println("STARTED");
        System.out.flush();
        var in = new java.io.BufferedReader(new java.io.InputStreamReader(System.in));
        while (in.readLine() != null) {
            long ops = Alloc.sum(counts);
            long now = System.nanoTime();
            long[] g = BenchSupport.gcCounts();
            System.out.println("MARK ops=" + ops + " nanos=" + now + " gcs=" + g[0] + " gc_ms=" + g[1]);
            System.out.flush();
        }
        Alloc.stop = true;
        System.exit(0);
    }

    private static void churn(long everyMs) {
        int n = 0;
        while (!Alloc.stop) {
            Thread t = new Thread(() -> Alloc.sink += new byte[4096].length, "churn-" + (n++ % 1000));
            t.start();
            try {
                Thread.sleep(everyMs);
            } catch (InterruptedException e) {
                return;
            }
        }
    }
}
