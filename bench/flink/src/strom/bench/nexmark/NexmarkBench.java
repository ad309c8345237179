package strom.bench.nexmark;

import java.math.BigDecimal;
import java.time.Instant;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;

import org.apache.flink.configuration.Configuration;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.table.api.EnvironmentSettings;
import org.apache.flink.table.api.Schema;
import org.apache.flink.table.api.Table;
import org.apache.flink.table.api.TableDescriptor;
import org.apache.flink.table.api.TableResult;
import org.apache.flink.table.api.bridge.java.StreamTableEnvironment;
import org.apache.flink.types.Row;
import org.apache.flink.util.CloseableIterator;

import strom.bench.Proc;

/**
 * Nexmark on Flink SQL, in a local MiniCluster.
 *
 * <pre>
 * NexmarkBench checksum --events N [--events-per-second R]
 *     the checksum of the first N events (the same number as `strom-bench nexmark-checksum`)
 * NexmarkBench rows QUERY[,QUERY…] --events N [--events-per-second R] [--parallelism P]
 *     each query's final rows (changelog applied), canonical text, one per line, after a
 *     line "# QUERY"; several queries share one JVM
 * NexmarkBench run QUERY --events N [--parallelism P]
 *     the query into a blackhole sink; one JSON line: events, seconds, cpu_seconds, peak_rss_kib
 * </pre>
 */
public final class NexmarkBench {

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            throw new IllegalArgumentException("usage: NexmarkBench checksum|rows|run ...");
        }
        String command = args[0];
        String query = null;
        int first = 1;
        if (!command.equals("checksum")) {
            if (args.length < 2) {
                throw new IllegalArgumentException(command + " needs a query: q0, q1, q2, q3, q4, q5, q7 or q8");
            }
            query = args[1];
            for (String q : query.split(",")) {
                if (!Queries.QUERIES.containsKey(q)) {
                    throw new IllegalArgumentException("unknown query " + q + "; queries are q0-q5, q7, q8");
                }
            }
            first = 2;
        }
        long events = 1_000_000;
        long eventsPerSecond = NexmarkGenerator.DEFAULT_EVENTS_PER_SECOND;
        int parallelism = 1;
        for (int i = first; i + 1 < args.length; i += 2) {
            String v = args[i + 1];
            switch (args[i]) {
                case "--events": events = Long.parseLong(v); break;
                case "--events-per-second": eventsPerSecond = Long.parseLong(v); break;
                case "--parallelism": parallelism = Integer.parseInt(v); break;
                default: throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        switch (command) {
            case "checksum":
                checksum(events, eventsPerSecond);
                break;
            case "rows":
                for (String q : query.split(",")) {
                    System.out.println("# " + q);
                    rows(q, events, eventsPerSecond, parallelism);
                }
                break;
            case "run":
                run(query, events, eventsPerSecond, parallelism);
                break;
            default:
                throw new IllegalArgumentException("unknown command " + command + "; use checksum, rows or run");
        }
        System.exit(0);
    }

    static void checksum(long events, long eventsPerSecond) {
        selfCheck();
        NexmarkGenerator generator = new NexmarkGenerator(eventsPerSecond);
        long hash = 0xcbf29ce484222325L;
        for (long n = 0; n < events; n++) {
            String line = generator.event(n) + "\n";
            for (int i = 0; i < line.length(); i++) {
                // Canonical text is ASCII, so a char is a byte.
                hash = (hash ^ (line.charAt(i) & 0xff)) * 0x100000001b3L;
            }
        }
        System.out.println(String.format(Locale.ROOT, "{\"events\":%d,\"checksum\":\"%016x\"}", events, hash));
    }

    /** The generator's unsynchronised LCG must give exactly java.util.Random's numbers. */
    static void selfCheck() {
        NexmarkGenerator.Lcg lcg = new NexmarkGenerator.Lcg();
        for (long seed = 0; seed < 10_000; seed++) {
            Random jdk = new Random(seed);
            lcg.setSeed(seed);
            for (int i = 0; i < 8; i++) {
                if (jdk.nextInt(13 + i * 1000) != lcg.nextInt(13 + i * 1000) || jdk.nextInt() != lcg.nextInt()
                        || jdk.nextDouble() != lcg.nextDouble() || jdk.nextLong() != lcg.nextLong()) {
                    throw new IllegalStateException("Lcg differs from java.util.Random at seed " + seed);
                }
            }
        }
    }

    static StreamTableEnvironment tableEnv(long events, long eventsPerSecond, int parallelism) {
        Configuration conf = new Configuration();
        // Nexmark's recommended settings for Flink SQL.
        conf.setString("pipeline.object-reuse", "true");
        conf.setString("table.exec.mini-batch.enabled", "true");
        conf.setString("table.exec.mini-batch.allow-latency", "2s");
        conf.setString("table.exec.mini-batch.size", "50000");
        conf.setString("table.optimizer.distinct-agg.split.enabled", "true");
        conf.setString("table.local-time-zone", "UTC");
        StreamExecutionEnvironment env = StreamExecutionEnvironment.createLocalEnvironment(parallelism, conf);
        StreamTableEnvironment tEnv = StreamTableEnvironment.create(env, EnvironmentSettings.inStreamingMode());
        tEnv.executeSql(Queries.table(events, eventsPerSecond));
        for (String view : Queries.VIEWS) {
            tEnv.executeSql(view);
        }
        return tEnv;
    }

    static void rows(String query, long events, long eventsPerSecond, int parallelism) throws Exception {
        StreamTableEnvironment tEnv = tableEnv(events, eventsPerSecond, parallelism);
        Map<String, Integer> multiset = new HashMap<>();
        TableResult result = tEnv.executeSql(Queries.QUERIES.get(query));
        try (CloseableIterator<Row> it = result.collect()) {
            while (it.hasNext()) {
                Row row = it.next();
                int delta = switch (row.getKind()) {
                    case INSERT, UPDATE_AFTER -> 1;
                    case UPDATE_BEFORE, DELETE -> -1;
                };
                multiset.merge(canonical(row), delta, Integer::sum);
            }
        }
        List<String> rows = new ArrayList<>();
        for (Map.Entry<String, Integer> e : multiset.entrySet()) {
            if (e.getValue() < 0) {
                throw new IllegalStateException("retraction of a row never emitted: " + e.getKey());
            }
            for (int i = 0; i < e.getValue(); i++) {
                rows.add(e.getKey());
            }
        }
        StringBuilder out = new StringBuilder();
        for (String r : rows) {
            out.append(r).append('\n');
        }
        System.out.print(out);
        System.out.flush();
    }

    /** Fields joined by '|': times as epoch milliseconds, decimals with their scale. */
    static String canonical(Row row) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < row.getArity(); i++) {
            if (i > 0) {
                sb.append('|');
            }
            Object v = row.getField(i);
            if (v instanceof LocalDateTime t) {
                sb.append(t.toInstant(ZoneOffset.UTC).toEpochMilli());
            } else if (v instanceof Instant t) {
                sb.append(t.toEpochMilli());
            } else if (v instanceof BigDecimal d) {
                sb.append(d.toPlainString());
            } else {
                sb.append(v);
            }
        }
        return sb.toString();
    }

    static void run(String query, long events, long eventsPerSecond, int parallelism) throws Exception {
        StreamTableEnvironment tEnv = tableEnv(events, eventsPerSecond, parallelism);
        Table table = tEnv.sqlQuery(Queries.QUERIES.get(query));
        TableDescriptor blackhole = TableDescriptor.forConnector("blackhole")
                .schema(Schema.newBuilder().fromResolvedSchema(table.getResolvedSchema()).build())
                .build();
        // Measured from submission (after SQL planning) to completion, as Nexmark measures
        // Flink: planning and the JVM's start are not the query's work.
        TableResult submitted = table.executeInsert(blackhole);
        long started = System.nanoTime();
        double cpuBefore = Proc.cpuSeconds();
        submitted.await();
        double seconds = (System.nanoTime() - started) / 1e9;
        double cpuSeconds = Proc.cpuSeconds() - cpuBefore;
        System.out.println(String.format(Locale.ROOT,
                "{\"events\":%d,\"seconds\":%.6f,\"cpu_seconds\":%.3f,\"peak_rss_kib\":%d}",
                events, seconds, cpuSeconds, Proc.peakRssKib()));
    }
}
