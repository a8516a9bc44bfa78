import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import jdk.jfr.consumer.RecordingStream;

/**
 * The anchor for visibility latency: JFR event streaming in-process. Runs the allocation loop on
 * {@code threads} threads and a {@code RecordingStream} on {@code jdk.GarbageCollection}; for each
 * event whose end is at least {@code warmupMs} after start, records (wall clock at the callback)
 * minus (the event's end time) in microseconds. After {@code runMs} the allocation stops; the
 * stream stays open {@code graceMs} more (JFR flushes about once a second), so the last
 * collections are delivered too rather than dropped; then it prints {@code LAT_US v1 v2 ...}
 * and exits.
 *
 * <p>Args: threads runMs warmupMs [graceMs] [keepPerThread].
 */
public final class JfrLatency {
    private JfrLatency() {}

    public static void main(String[] a) throws Exception {
        int threads = Integer.parseInt(a[0]);
        long runMs = Long.parseLong(a[1]);
        long warmupMs = Long.parseLong(a[2]);
        long graceMs = a.length > 3 ? Long.parseLong(a[3]) : 2500;
        int keep = a.length > 4 ? Integer.parseInt(a[4]) : 8192;
        BenchSupport.start();
        Instant from = Instant.now().plusMillis(warmupMs);
        List<Long> lat = new ArrayList<>();
        try (RecordingStream rs = new RecordingStream()) {
            rs.enable("jdk.GarbageCollection");
            rs.onEvent("jdk.GarbageCollection", e -> {
                Instant now = Instant.now();
                Instant end = e.getEndTime();
                if (!end.isBefore(from)) {
                    synchronized (lat) {
                        lat.add(Duration.between(end, now).toNanos() / 1000);
                    }
                }
            });
            rs.startAsync();
            Alloc.start(threads, keep);
            Thread.sleep(runMs);
            Alloc.stop = true;
            Thread.sleep(graceMs);
        }
        StringBuilder sb = new StringBuilder("LAT_US");
        synchronized (lat) {
            for (long v : lat) {
                sb.append(' ').append(v);
            }
        }
        System.out.println(sb);
        System.out.flush();
        System.exit(0);
    }
}
