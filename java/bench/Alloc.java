import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicLongArray;

/**
 * The allocation loop shared by the bench workloads: each "op" builds a short-lived linked list of
 * 16 small objects, walks it, and every 8th op replaces one entry of a per-thread table of medium
 * arrays (the retained set that G1 has to promote, mark and compact).
 */
final class Alloc {
    /** Longs per counter slot: 128 bytes, so two threads never share a cache line. */
    static final int PAD = 16;

    static final class Node {
        long v;
        byte[] data;
        Node next;
    }

    static volatile boolean stop;
    static volatile long sink;

    private Alloc() {}

    /** Runs until {@link #stop}; publishes its op count into {@code counts[id * PAD]} every 256 ops. */
    static void loop(int id, AtomicLongArray counts, int keepPerThread) {
        ThreadLocalRandom r = ThreadLocalRandom.current();
        Object[] keep = new Object[keepPerThread];
        long ops = 0;
        long acc = 0;
        while (!stop) {
            Node head = null;
            for (int i = 0; i < 16; i++) {
                Node n = new Node();
                n.v = r.nextLong();
                n.data = new byte[16 + r.nextInt(112)];
                n.next = head;
                head = n;
            }
            for (Node n = head; n != null; n = n.next) {
                acc += n.v + n.data.length;
            }
            if ((ops & 7) == 0) {
                keep[r.nextInt(keepPerThread)] = new byte[256 + r.nextInt(3840)];
            }
            ops++;
            if ((ops & 255) == 0) {
                counts.lazySet(id * PAD, ops);
            }
        }
        counts.set(id * PAD, ops);
        sink = acc;
    }

    /** Starts {@code threads} daemon workers. */
    static AtomicLongArray start(int threads, int keepPerThread) {
        AtomicLongArray counts = new AtomicLongArray(threads * PAD);
        for (int t = 0; t < threads; t++) {
            final int id = t;
            Thread w = new Thread(() -> loop(id, counts, keepPerThread), "alloc-" + t);
            w.setDaemon(true);
            w.start();
        }
        return counts;
    }

    static long sum(AtomicLongArray counts) {
        long s = 0;
        for (int i = 0; i < counts.length(); i += PAD) {
            s += counts.get(i);
        }
        return s;
    }
}
