import java.io.InputStream;
import java.util.ArrayList;
import java.util.List;

/**
 * One way for a JVM to die, chosen by the first argument (the death matrix of
 * tests/e2e/deaths.rs). Prints "ready" once running, when the test has to act (kill, stop).
 *
 * exit0 | exit3 | wait (runs until killed) | heap (fills the heap, uncaught OOM) |
 * caught_oom (fills the heap, catches the OOM, frees it, exits 0) | metaspace (defines
 * classes until Metaspace OOM) | threads (starts threads until the JVM cannot create one) |
 * touch (allocates and touches memory until something stops it) | thrash (keeps the heap
 * nearly full of live data while allocating) | quick (exits within the first milliseconds,
 * while the agent's sampler runs at its fastest interval)
 */
public final class Die {
    static volatile Object sink;

    public static void main(String[] args) throws Exception {
        String mode = args[0];
        switch (mode) {
            case "exit0":
                churn(200);
                return;
            case "exit3":
                churn(200);
                System.exit(3);
                return;
            case "wait":
                ready();
                while (true) {
                    churn(1);
                    Thread.sleep(10);
                }
            case "heap":
                churn(100);
                fill(new ArrayList<>());
                return;
            case "caught_oom": {
                churn(100);
                List<long[]> hog = new ArrayList<>();
                try {
                    fill(hog);
                } catch (OutOfMemoryError e) {
                    hog.clear();
                    hog = null;
                    System.out.println("caught " + e.getMessage());
                }
                churn(200);
                return;
            }
            case "metaspace":
                metaspace();
                return;
            case "threads":
                threads();
                return;
            case "touch": {
                List<byte[]> hog = new ArrayList<>();
                while (true) {
                    byte[] b = new byte[1 << 20];
                    for (int i = 0; i < b.length; i += 4096) {
                        b[i] = 1;
                    }
                    hog.add(b);
                }
            }
            case "thrash":
                thrash();
                return;
            case "quick":
                return;
            default:
                throw new IllegalArgumentException(mode);
        }
    }

    static void ready() {
        System.out.println("ready");
        System.out.flush();
    }

    /** A little garbage: `n` rounds of short-lived arrays (GC events to record). */
    static void churn(int n) {
        for (int r = 0; r < n; r++) {
            for (int i = 0; i < 1000; i++) {
                sink = new byte[1024];
            }
        }
    }

    static void fill(List<long[]> hog) {
        while (true) {
            hog.add(new long[16 * 1024]);
        }
    }

    /** A tiny class, defined again and again in fresh loaders until Metaspace runs out. */
    static final class Tiny {}

    static void metaspace() throws Exception {
        byte[] bytes;
        try (InputStream in = Die.class.getResourceAsStream("Die$Tiny.class")) {
            bytes = in.readAllBytes();
        }
        List<ClassLoader> keep = new ArrayList<>();
        while (true) {
            ClassLoader l = new ClassLoader(null) {
                @Override
                protected Class<?> findClass(String name) throws ClassNotFoundException {
                    if (name.equals("Die$Tiny")) {
                        return defineClass(name, bytes, 0, bytes.length);
                    }
                    throw new ClassNotFoundException(name);
                }
            };
            l.loadClass("Die$Tiny");
            keep.add(l);
        }
    }

    static void threads() {
        List<Thread> keep = new ArrayList<>();
        while (true) {
            Thread t = new Thread(() -> {
                try {
                    Thread.sleep(Long.MAX_VALUE);
                } catch (InterruptedException e) {
                    // ends
                }
            });
            t.setDaemon(true);
            t.start();
            keep.add(t);
        }
    }

    /** Live data near the heap's size, while allocating: collections that free almost nothing. */
    static void thrash() {
        List<long[]> live = new ArrayList<>();
        long max = Runtime.getRuntime().maxMemory();
        long held = 0;
        while (held < max * 0.85) {
            live.add(new long[8 * 1024]);
            held += 8 * 1024 * 8;
        }
        ready();
        int i = 0;
        while (true) {
            live.set(i++ % live.size(), new long[8 * 1024]);
            sink = new long[8 * 1024];
        }
    }
}
