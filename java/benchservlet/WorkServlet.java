package bench;

import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;

/**
 * The Tomcat workload's one servlet (jvmwatch-bench, section 10): {@code GET /work?n=N} does
 * what HttpWork's handler does: builds N records, sorts them and renders them as JSON (~3 KB for
 * N = 40). Compiled by the harness at run time against the servlet API jar Debian's Tomcat ships.
 */
public final class WorkServlet extends HttpServlet {
    private static final long serialVersionUID = 1L;

    record Item(int id, String name, double score, long stamp) {}

    @Override
    protected void doGet(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        int n = 40;
        String q = req.getParameter("n");
        if (q != null) {
            n = Math.max(1, Math.min(1000, Integer.parseInt(q)));
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
        resp.setContentType("application/json");
        resp.setContentLength(body.length);
        resp.getOutputStream().write(body);
    }
}
