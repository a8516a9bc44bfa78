import io.jvmwatch.Counter;
import io.jvmwatch.Jvmwatch;
import io.jvmwatch.Timer;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A service stand-in for the controller tests: about 200 requests per second, each recorded
 * in the timer "latency" and the counter "requests"; every 50th also counts in "errors".
 * The control file named by the first argument steers it; it is re-read every 50 ms and holds one line:
 * "latency MS" (every request takes MS ms), "idle" (no requests), "exit N" (System.exit(N)).
 * A missing file means "latency 1". The second argument, if present, is this instance's own
 * latency override file (checked first), so one instance of several can be made slow.
 */
public final class Service {
    public static void main(String[] args) throws Exception {
        Counter requests = Jvmwatch.counter("requests");
        Timer latency = Jvmwatch.timer("latency");
        Counter errors = Jvmwatch.counter("errors");
        long served = 0;
        System.out.println("ready");
        System.out.flush();
        String mode = "latency 1";
        long lastRead = 0;
        while (true) {
            long now = System.nanoTime();
            if (now - lastRead > 50_000_000L) {
                lastRead = now;
                mode = read(args.length > 1 ? args[1] : null, read(args[0], "latency 1"));
                if (mode.startsWith("exit ")) {
                    System.exit(Integer.parseInt(mode.substring(5).trim()));
                }
            }
            if (mode.equals("idle")) {
                Thread.sleep(20);
                continue;
            }
            long ms = mode.startsWith("latency ") ? Long.parseLong(mode.substring(8).trim()) : 1;
            requests.increment();
            latency.record(ms * 1_000_000L);
            if (++served % 50 == 0) {
                errors.increment();
            }
            Thread.sleep(5);
        }
    }

    static String read(String file, String fallback) {
        if (file == null) {
            return fallback;
        }
        try {
            String s = Files.readString(Path.of(file)).trim();
            return s.isEmpty() ? fallback : s;
        } catch (Exception e) {
            return fallback;
        }
    }
}
