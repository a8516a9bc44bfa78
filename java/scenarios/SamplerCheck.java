import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.lang.management.MemoryPoolMXBean;
import java.lang.management.MemoryUsage;
import java.lang.management.ThreadMXBean;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;

/**
 * For the sampler's tests (tests/e2e/sampler.rs). Runs until killed; each step waits for a
 * file the test creates in the working directory.
 *
 * <p>{@code census}: 4 threads BLOCKED on a monitor and 3 WAITING; at file {@code end} all 7
 * finish; at file {@code again} 2 new threads block on the monitor.
 *
 * <p>{@code figures}: collects twice ({@code System.gc()}), then, quiet, writes what the
 * MXBeans say to {@code figures.txt} (one {@code key=value} per line), written whole and then
 * renamed into place.
 */
public final class SamplerCheck {
    private static final Object MONITOR = new Object();
    static volatile Object sink;

    public static void main(String[] args) throws Exception {
        if (args.length == 1 && args[0].equals("census")) {
            census();
        } else if (args.length == 1 && args[0].equals("figures")) {
            figures();
        } else {
            throw new IllegalArgumentException("usage: SamplerCheck census|figures");
        }
        Thread.sleep(Long.MAX_VALUE);
    }

    private static void census() throws Exception {
        CountDownLatch release = new CountDownLatch(1);
        List<Thread> threads = new ArrayList<>();
        synchronized (MONITOR) {
            for (int i = 0; i < 3; i++) {
                threads.add(start("census-waiting-" + i, () -> await(release)));
            }
            for (int i = 0; i < 4; i++) {
                threads.add(start("census-blocked-" + i, SamplerCheck::enter));
            }
            waitForFile("end");
            release.countDown();
        }
        for (Thread t : threads) {
            t.join();
        }
        synchronized (MONITOR) {
            waitForFile("again");
            for (int i = 0; i < 2; i++) {
                start("census-again-" + i, SamplerCheck::enter);
            }
            Thread.sleep(Long.MAX_VALUE);
        }
    }

    private static void figures() throws Exception {
        for (int i = 0; i < 200_000; i++) {
            sink = new byte[256];
        }
        System.gc();
        System.gc();
        Thread.sleep(300);
        StringBuilder out = new StringBuilder();
        MemoryUsage heap = ManagementFactory.getMemoryMXBean().getHeapMemoryUsage();
        line(out, "heap.committed", heap.getCommitted());
        line(out, "heap.max", heap.getMax());
        ThreadMXBean threads = ManagementFactory.getThreadMXBean();
        line(out, "threads.live", threads.getThreadCount());
        line(out, "threads.daemon", threads.getDaemonThreadCount());
        for (GarbageCollectorMXBean gc : ManagementFactory.getGarbageCollectorMXBeans()) {
            line(out, "gc." + gc.getName() + ".count", gc.getCollectionCount());
            line(out, "gc." + gc.getName() + ".time", gc.getCollectionTime());
        }
        for (MemoryPoolMXBean pool : ManagementFactory.getMemoryPoolMXBeans()) {
            MemoryUsage u = pool.getUsage();
            MemoryUsage after = pool.getCollectionUsage();
            line(out, "pool." + pool.getName() + ".committed", u.getCommitted());
            line(out, "pool." + pool.getName() + ".max", u.getMax());
            line(out, "pool." + pool.getName() + ".after_gc", after == null ? -1 : after.getUsed());
        }
        Path tmp = Path.of("figures.tmp");
        Files.write(tmp, out.toString().getBytes(StandardCharsets.UTF_8));
        Files.move(tmp, Path.of("figures.txt"), StandardCopyOption.ATOMIC_MOVE);
    }

    private static void line(StringBuilder out, String key, long value) {
        out.append(key).append('=').append(value).append('\n');
    }

    private static Thread start(String name, Runnable body) {
        Thread t = new Thread(body, name);
        t.setDaemon(true);
        t.start();
        return t;
    }

    private static void enter() {
        synchronized (MONITOR) {
            sink = Thread.currentThread();
        }
    }

    private static void await(CountDownLatch latch) {
        try {
            latch.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static void waitForFile(String name) throws InterruptedException {
        while (!Files.exists(Path.of(name))) {
            Thread.sleep(10);
        }
    }
}
