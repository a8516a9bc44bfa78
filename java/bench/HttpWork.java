import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Request-serving workload: a {@code com.sun.net.httpserver} server on 127.0.0.1 (port chosen by
 * the OS) with a fixed pool of {@code poolThreads} handler threads. {@code GET /work?n=N} builds N
 * records, sorts them and renders them as JSON (a few KB of garbage per request).
 *
 * <p>Prints {@code PORT <n>} once listening; exits when its standard input closes (the harness
 * closes it) or bench.maxMs passes.
 */
public final class HttpWork {
    private HttpWork() {}

    record Item(int id, String name, double score, long stamp) {}

    public static void main(String[] a) throws Exception {
        int poolThreads = a.length > 0 ? Integer.parseInt(a[0]) : 4;
        BenchSupport.start();
        HttpServer server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 1024);
        ExecutorService pool = Executors.newFixedThreadPool(poolThreads);
        server.setExecutor(pool);
        server.createContext("/work", HttpWork::handle);
        server.start();
        System.out.println("PORT " + server.getAddress().getPort());
        System.out.flush();
        while (System.in.read() != -1) {
            // wait for the harness to close stdin
        }
        server.stop(0);
        pool.shutdownNow();
        System.exit(0);
    }

    private static void handle(HttpExchange ex) throws IOException {
        int n = 40;
        String q = ex.getRequestURI().getRawQuery();
        if (q != null && q.startsWith("n=")) {
            n = Math.max(1, Math.min(1000, Integer.parseInt(q.substring(2))));
        }
        ThreadLocalRandom r = ThreadLocalRandom.current();
        List<Item> items = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            items.add(new Item(i, "item-" + r.nextInt(1_000_000), r.nextDouble(), System.nanoTime()));
        }
        items.sort(Comparator.comparingDouble(Item::score).reversed());
        StringBuilder sb = new StringBuilder(64 * n + 32);
        sb.append("{\"count\":").append(n).append(",\"items\":[");
        for (int i = 0; i < items.size(); i++) {
            Item it = items.get(i);
            if (i > 0) {
                sb.append(',');
            }
            sb.append("{\"id\":").append(it.id()).append(",\"name\":\"").append(it.name())
                    .append("\",\"score\":").append(it.score()).append(",\"stamp\":").append(it.stamp()).append('}');
        }
        sb.append("]}");
        byte[] body = sb.toString().getBytes(StandardCharsets.UTF_8);
        ex.getRequestBody().close();
        ex.getResponseHeaders().set("Content-Type", "application/json");
        ex.sendResponseHeaders(200, body.length);
        try (OutputStream os = ex.getResponseBody()) {
            os.write(body);
        }
    }
}
