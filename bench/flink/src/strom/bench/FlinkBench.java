package strom.bench;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Locale;

import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.connector.source.SourceReaderContext;
import org.apache.flink.configuration.CheckpointingOptions;
import org.apache.flink.core.execution.JobClient;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.StateBackendOptions;
import org.apache.flink.connector.datagen.source.DataGeneratorSource;
import org.apache.flink.connector.datagen.source.GeneratorFunction;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;

/**
 * The Flink counterparts of Strom's benchmark pipelines ({@code bench/src/cases.rs}): the same
 * record type, key function and generator sequence, in a local MiniCluster.
 *
 * <pre>
 * FlinkBench case NAME --parallelism P --events N [--backend heap|rocksdb]
 *                      [--checkpoint-ms MS] [--rate EVENTS_PER_SECOND]
 * </pre>
 *
 * Prints one JSON line: events, seconds and cpu_seconds (from submission to completion),
 * peak_rss_kib (and latency percentiles for the latency case).
 */
public final class FlinkBench {

    static final long SUM_KEYS = 10_000;
    static final long WINDOW_KEYS = 100;
    static final long WINDOW_MS = 1_000;

    public static void main(String[] args) throws Exception {
        Args a = Args.parse(args);
        Configuration conf = new Configuration();
        if (a.backend.equals("rocksdb")) {
            conf.set(StateBackendOptions.STATE_BACKEND, "rocksdb");
        } else if (!a.backend.equals("heap")) {
            throw new IllegalArgumentException("--backend must be heap or rocksdb, not " + a.backend);
        }
        Path checkpoints = null;
        if (a.checkpointMs > 0) {
            checkpoints = Files.createTempDirectory("flink-bench-checkpoints");
            conf.set(CheckpointingOptions.CHECKPOINTS_DIRECTORY, checkpoints.toUri().toString());
        }
        StreamExecutionEnvironment env = StreamExecutionEnvironment.createLocalEnvironment(a.parallelism, conf);
        if (a.checkpointMs > 0) {
            env.enableCheckpointing(a.checkpointMs);
        }
        Latency latency = null;
        switch (a.name) {
            case "map-filter":
                source(env, a, SUM_KEYS, false)
                        .map(BenchEvent::scramble)
                        .filter(BenchEvent::keep)
                        .sinkTo(new DiscardingSink<>());
                break;
            case "keyed-sum":
                source(env, a, SUM_KEYS, false)
                        .keyBy(e -> e.key)
                        .sum("value")
                        .uid("sum")
                        .sinkTo(new DiscardingSink<>());
                break;
            case "tumbling-window":
                source(env, a, WINDOW_KEYS, true)
                        .keyBy(e -> e.key)
                        .window(TumblingEventTimeWindows.of(Duration.ofMillis(WINDOW_MS)))
                        .aggregate(new Count())
                        .uid("window-count")
                        .sinkTo(new DiscardingSink<>());
                break;
            case "keyed-latency":
                // Rate-limited; every event carries its creation time (µs) in `timestamp`,
                // which the reduce keeps from the newest event.
                latency = new Latency();
                DataGeneratorSource<BenchEvent> timed = new DataGeneratorSource<>(
                        new Paced(a.rate / a.parallelism),
                        a.events,
                        TypeInformation.of(BenchEvent.class));
                env.fromSource(timed, WatermarkStrategy.noWatermarks(), "events")
                        .keyBy(e -> e.key)
                        .reduce((x, y) -> new BenchEvent(x.key, x.value + y.value, y.timestamp))
                        .uid("sum")
                        .sinkTo(new Latency.Sink())
                        .name("latency");
                break;
            default:
                throw new IllegalArgumentException("unknown case " + a.name
                        + "; cases are map-filter, keyed-sum, tumbling-window, keyed-latency");
        }
        // Measured from submission to completion: the JVM's start is not the job's work.
        JobClient job = env.executeAsync(a.name);
        long started = System.nanoTime();
        double cpuBefore = Proc.cpuSeconds();
        job.getJobExecutionResult().get();
        double seconds = (System.nanoTime() - started) / 1e9;
        double cpuSeconds = Proc.cpuSeconds() - cpuBefore;
        if (checkpoints != null) {
            deleteTree(checkpoints);
        }
        StringBuilder json = new StringBuilder();
        json.append(String.format(Locale.ROOT,
                "{\"events\":%d,\"seconds\":%.6f,\"cpu_seconds\":%.3f,\"peak_rss_kib\":%d",
                a.events, seconds, cpuSeconds, Proc.peakRssKib()));
        if (latency != null) {
            json.append(",\"latency_us\":").append(Latency.percentilesJson());
        }
        json.append("}");
        System.out.println(json);
        System.exit(0);
    }

    static DataStream<BenchEvent> source(StreamExecutionEnvironment env, Args a, long keys, boolean eventTime) {
        DataGeneratorSource<BenchEvent> gen = new DataGeneratorSource<>(
                i -> BenchEvent.event(i, keys), a.events, TypeInformation.of(BenchEvent.class));
        WatermarkStrategy<BenchEvent> wm = eventTime
                ? WatermarkStrategy.<BenchEvent>forMonotonousTimestamps().withTimestampAssigner((e, t) -> e.timestamp)
                : WatermarkStrategy.noWatermarks();
        return env.fromSource(gen, wm, "events");
    }

    /**
     * Generates events at a fixed rate, stamped with their creation time (µs). Flink's own
     * RateLimiterStrategy waits per record and could not reach the rates measured here, so
     * the generator paces itself: it sleeps whenever it is more than 1 ms ahead.
     */
    static final class Paced implements GeneratorFunction<Long, BenchEvent> {
        private final double perSecond;
        private transient long start;
        private transient long emitted;

        Paced(double perSecond) {
            this.perSecond = perSecond;
        }

        @Override
        public void open(SourceReaderContext context) {
            start = System.nanoTime();
            emitted = 0;
        }

        @Override
        public BenchEvent map(Long i) throws Exception {
            if ((emitted & 63) == 0) {
                long due = start + (long) (emitted / perSecond * 1e9);
                long ahead = due - System.nanoTime();
                if (ahead > 1_000_000) {
                    Thread.sleep(ahead / 1_000_000, (int) (ahead % 1_000_000));
                }
            }
            emitted++;
            BenchEvent e = BenchEvent.event(i, SUM_KEYS);
            e.timestamp = Latency.nowMicros();
            return e;
        }
    }

    /** Counts a window's events per key: (key, count). */
    static final class Count implements AggregateFunction<BenchEvent, long[], long[]> {
        @Override
        public long[] createAccumulator() {
            return new long[2];
        }

        @Override
        public long[] add(BenchEvent e, long[] acc) {
            acc[0] = e.key;
            acc[1] += 1;
            return acc;
        }

        @Override
        public long[] getResult(long[] acc) {
            return acc;
        }

        @Override
        public long[] merge(long[] a, long[] b) {
            a[1] += b[1];
            return a;
        }
    }

    static void deleteTree(Path p) throws Exception {
        try (var walk = Files.walk(p)) {
            walk.sorted(java.util.Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
        }
    }

    static final class Args {
        String name;
        int parallelism = 1;
        long events = 20_000_000;
        String backend = "heap";
        long checkpointMs = 0;
        double rate = 0;

        static Args parse(String[] args) {
            Args a = new Args();
            if (args.length < 2 || !args[0].equals("case")) {
                throw new IllegalArgumentException("usage: FlinkBench case NAME --parallelism P --events N "
                        + "[--backend heap|rocksdb] [--checkpoint-ms MS] [--rate R]");
            }
            a.name = args[1];
            for (int i = 2; i + 1 < args.length; i += 2) {
                String v = args[i + 1];
                switch (args[i]) {
                    case "--parallelism": a.parallelism = Integer.parseInt(v); break;
                    case "--events": a.events = Long.parseLong(v); break;
                    case "--backend": a.backend = v; break;
                    case "--checkpoint-ms": a.checkpointMs = Long.parseLong(v); break;
                    case "--rate": a.rate = Double.parseDouble(v); break;
                    default: throw new IllegalArgumentException("unknown option " + args[i]);
                }
            }
            return a;
        }
    }
}
