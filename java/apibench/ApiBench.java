import io.jvmwatch.Counter;
import io.jvmwatch.Jvmwatch;
import io.jvmwatch.Timer;
import java.lang.management.ManagementFactory;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.LongAdder;

/**
 * Cost of io.jvmwatch Counter.increment() and Timer.record(nanos) against a LongAdder.increment()
 * baseline and the counter's bare memory access ("bytebuffer", see RAW) measured in the same JVM, interleaved, single-threaded and with 8 threads. JMH is not
 * available offline, so this is a careful small harness: every variant is warmed up (JIT) before
 * measurement, variants are interleaved in rounds, the driver repeats the whole thing in several
 * forked JVMs, each operation has a real side effect (an atomic add that the JIT cannot remove)
 * and the loop result goes into a volatile sink.
 *
 * Usage: ApiBench [forks] [seconds per measurement]      (driver; forks the JVM it runs in)
 *        ApiBench --fork SECONDS                          (one fork; prints result lines)
 * Output (driver): one line per variant: "result <variant> <threads> <ops_per_s median> <min> <max>",
 * then "paired <variant> <threads> <median> <min> <max>" of the per-round ratio of its CPU ns per op
 * (the recording threads' own CPU time, ThreadMXBean) to LongAdder's in the same fork and round:
 * the figure least hurt by other processes, which steal wall time but not the threads' CPU time.
 */
public final class ApiBench {
    static volatile boolean stop;
    static volatile long sink;

    /**
     * The floor for Counter.increment(): its one memory access alone (a VarHandle getAndAdd on a
     * direct ByteBuffer, at the same per-thread stripe), on a private buffer. On JDK 17 that is
     * the cheapest safe way to add atomically to memory shared with another process (the mapped
     * ring); whatever the counter costs above it is jvmwatch's own code.
     */
    static final java.lang.invoke.VarHandle RAW_LONGS =
            java.lang.invoke.MethodHandles.byteBufferViewVarHandle(long[].class, java.nio.ByteOrder.LITTLE_ENDIAN);
    static final java.nio.ByteBuffer RAW = java.nio.ByteBuffer.allocateDirect(4096);

    /** The API's stripe: 8 cache lines by thread id, as io.jvmwatch.Jvmwatch.stripe(). */
    static int stripe() {
        return ((int) Thread.currentThread().getId() & 7) << 6;
    }

    /**
     * One variant's recording loop: runs until {@link #stop}, returns the operations done. Each
     * variant has its own loop method, so each call site sees one receiver and the JIT inlines
     * the operation, as it would at an application's call site (and as JMH does). A loop shared
     * by all variants through an interface made that call megamorphic, and its ratios moved with
     * the number of variants (counter 3.2× LongAdder with three variants, 1.0× with four).
     */
    interface Loop {
        long run();
    }

    static long adderLoop(LongAdder adder) {
        long n = 0;
        while (!stop) {
            for (int i = 0; i < 1000; i++) {
                adder.increment();
            }
            n += 1000;
        }
        return n;
    }

    static long counterLoop(Counter counter) {
        long n = 0;
        while (!stop) {
            for (int i = 0; i < 1000; i++) {
                counter.increment();
            }
            n += 1000;
        }
        return n;
    }

    static long timerLoop(Timer timer) {
        long n = 0;
        while (!stop) {
            for (int i = 0; i < 1000; i++) {
                timer.record(1000 + ((n + i) & 0xfffff));
            }
            n += 1000;
        }
        return n;
    }

    static long byteBufferLoop() {
        long n = 0;
        while (!stop) {
            for (int i = 0; i < 1000; i++) {
                RAW_LONGS.getAndAdd(RAW, 128 + stripe(), 1L);
            }
            n += 1000;
        }
        return n;
    }

    public static void main(String[] args) throws Exception {
        if (args.length > 0 && args[0].equals("--fork")) {
            fork(Double.parseDouble(args[1]));
            return;
        }
        int forks = args.length > 0 ? Integer.parseInt(args[0]) : 3;
        String seconds = args.length > 1 ? args[1] : "1";
        List<String> cmd = new ArrayList<>();
        cmd.add(ProcessHandle.current().info().command().orElse("java"));
        cmd.addAll(ManagementFactory.getRuntimeMXBean().getInputArguments());
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add("ApiBench");
        cmd.add("--fork");
        cmd.add(seconds);
        java.util.Map<String, List<Double>> results = new java.util.TreeMap<>();
        java.util.Map<String, List<Double>> paired = new java.util.TreeMap<>();
        for (int f = 0; f < forks; f++) {
            System.err.println("fork " + (f + 1) + "/" + forks);
            Process p = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT).start();
            try (var r = new java.io.BufferedReader(new java.io.InputStreamReader(p.getInputStream()))) {
                String line;
                while ((line = r.readLine()) != null) {
                    String[] w = line.split(" ");
                    if (w[0].equals("fork")) {
                        results.computeIfAbsent(w[1] + " " + w[2], k -> new ArrayList<>()).add(Double.parseDouble(w[3]));
                    } else if (w[0].equals("pair")) {
                        paired.computeIfAbsent(w[1] + " " + w[2], k -> new ArrayList<>()).add(Double.parseDouble(w[3]));
                    } else {
                        System.out.println(line);
                    }
                }
            }
            if (p.waitFor() != 0) {
                throw new IllegalStateException("fork failed");
            }
        }
        for (var e : results.entrySet()) {
            List<Double> v = e.getValue();
            v.sort(null);
            System.out.printf("result %s %.0f %.0f %.0f%n", e.getKey(), v.get(v.size() / 2), v.get(0), v.get(v.size() - 1));
        }
        for (var e : paired.entrySet()) {
            List<Double> v = e.getValue();
            v.sort(null);
            System.out.printf("paired %s %.4f %.4f %.4f%n", e.getKey(), v.get(v.size() / 2), v.get(0), v.get(v.size() - 1));
        }
    }

    static void fork(double seconds) throws Exception {
        LongAdder adder = new LongAdder();
        Counter counter = Jvmwatch.counter("bench.counter");
        Timer timer = Jvmwatch.timer("bench.timer");
        String[] names = {"longadder", "counter", "timer", "bytebuffer"};
        Loop[] ops = {() -> adderLoop(adder), () -> counterLoop(counter), () -> timerLoop(timer), ApiBench::byteBufferLoop};
        System.out.println("active " + Jvmwatch.active());
        // Warm-up: every variant, both thread counts, until the JIT has settled.
        for (int round = 0; round < 2; round++) {
            for (int v = 0; v < ops.length; v++) {
                measure(ops[v], 1, 0.3);
                measure(ops[v], 8, 0.3);
            }
        }
        // Measurement: three interleaved rounds, rotating the order.
        int[] threadCounts = {1, 8};
        for (int round = 0; round < 3; round++) {
            double[][] got = new double[ops.length][threadCounts.length];
            double[][] cpu = new double[ops.length][threadCounts.length];
            for (int k = 0; k < ops.length; k++) {
                int v = (k + round) % ops.length;
                for (int t = 0; t < threadCounts.length; t++) {
                    double[] m = measure(ops[v], threadCounts[t], seconds);
                    got[v][t] = m[0];
                    cpu[v][t] = m[1];
                    System.out.printf("fork %s %d %.0f%n", names[v], threadCounts[t], got[v][t]);
                }
            }
            // CPU ns per op relative to LongAdder's (variant 0) in this round.
            for (int v = 1; v < ops.length; v++) {
                for (int t = 0; t < threadCounts.length; t++) {
                    System.out.printf("pair %s %d %.4f%n", names[v], threadCounts[t], cpu[v][t] / cpu[0][t]);
                }
            }
        }
        sink += adder.sum();
    }

    /**
     * Runs `op` on `threads` threads for `seconds`; returns total operations per second and the
     * threads' CPU ns per operation.
     */
    static double[] measure(Loop loop, int threads, double seconds) throws Exception {
        stop = false;
        java.lang.management.ThreadMXBean mx = ManagementFactory.getThreadMXBean();
        long[] counts = new long[threads * 16]; // padded: one slot per 128 bytes
        long[] cpus = new long[threads * 16];
        Thread[] ts = new Thread[threads];
        java.util.concurrent.CountDownLatch start = new java.util.concurrent.CountDownLatch(1);
        for (int t = 0; t < threads; t++) {
            final int slot = t * 16;
            ts[t] = new Thread(() -> {
                try {
                    start.await();
                } catch (InterruptedException e) {
                    return;
                }
                long cpu0 = mx.getCurrentThreadCpuTime();
                long n = loop.run();
                cpus[slot] = mx.getCurrentThreadCpuTime() - cpu0;
                counts[slot] = n;
            });
            ts[t].start();
        }
        long t0 = System.nanoTime();
        start.countDown();
        Thread.sleep((long) (seconds * 1000));
        stop = true;
        for (Thread t : ts) {
            t.join();
        }
        long elapsed = System.nanoTime() - t0;
        long total = 0;
        long cpu = 0;
        for (int t = 0; t < threads; t++) {
            total += counts[t * 16];
            cpu += cpus[t * 16];
        }
        return new double[] {total * 1e9 / elapsed, (double) cpu / Math.max(total, 1)};
    }
}
