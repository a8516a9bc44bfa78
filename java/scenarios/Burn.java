import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Burns CPU for the usage tests: the first argument is the number of busy threads, the second
 * a file that receives "availableProcessors N" (what the JVM was told). Runs until killed.
 */
public final class Burn {
    static volatile long sink;

    public static void main(String[] args) throws Exception {
        int threads = Integer.parseInt(args[0]);
        Path out = Path.of(args[1]);
        Path tmp = Path.of(args[1] + ".tmp");
        Files.writeString(tmp, "availableProcessors " + Runtime.getRuntime().availableProcessors() + "\n");
        Files.move(tmp, out);
        for (int i = 0; i < threads; i++) {
            Thread t = new Thread(() -> {
                long x = 0;
                while (true) {
                    x = x * 6364136223846793005L + 1442695040888963407L;
                    if ((x & 0xffff) == 0) {
                        sink = x;
                    }
                }
            });
            t.setDaemon(true);
            t.start();
        }
        Thread.sleep(Long.MAX_VALUE);
    }
}
