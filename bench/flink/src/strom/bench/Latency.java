package strom.bench;

import java.util.concurrent.atomic.AtomicLongArray;

import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;

/**
 * End-to-end latency (creation → sink) in a log-linear histogram: exact below 128 µs, then
 * 64 steps per power of two (≤ 1.6% error). The same buckets as Strom's harness.
 */
final class Latency {
    private static final long START = System.nanoTime();
    private static final AtomicLongArray BUCKETS = new AtomicLongArray(128 + 56 * 64);

    static long nowMicros() {
        return (System.nanoTime() - START) / 1_000;
    }

    static int bucket(long v) {
        if (v < 128) {
            return (int) Math.max(v, 0);
        }
        int e = 63 - Long.numberOfLeadingZeros(v);
        long sub = (v >>> (e - 6)) & 63;
        return 128 + (e - 7) * 64 + (int) sub;
    }

    static long lowerBound(int b) {
        if (b < 128) {
            return b;
        }
        int e = (b - 128) / 64 + 7;
        long sub = (b - 128) % 64;
        return (64 + sub) << (e - 6);
    }

    static void record(long micros) {
        BUCKETS.incrementAndGet(bucket(micros));
    }

    static String percentilesJson() {
        long total = 0;
        for (int i = 0; i < BUCKETS.length(); i++) {
            total += BUCKETS.get(i);
        }
        double[] qs = {0.5, 0.99, 0.999};
        String[] names = {"p50", "p99", "p999"};
        StringBuilder sb = new StringBuilder("{");
        for (int q = 0; q < qs.length; q++) {
            long rank = (long) Math.ceil(qs[q] * total);
            long seen = 0;
            long value = 0;
            for (int i = 0; i < BUCKETS.length(); i++) {
                seen += BUCKETS.get(i);
                if (seen >= rank && rank > 0) {
                    value = lowerBound(i);
                    break;
                }
            }
            if (q > 0) {
                sb.append(',');
            }
            sb.append('"').append(names[q]).append("\":").append(value);
        }
        return sb.append(",\"count\":").append(total).append('}').toString();
    }

    /** Records each result's latency from the creation time it carries. */
    static final class Sink implements org.apache.flink.api.connector.sink2.Sink<BenchEvent> {
        @Override
        public SinkWriter<BenchEvent> createWriter(WriterInitContext context) {
            return new SinkWriter<>() {
                @Override
                public void write(BenchEvent e, Context ctx) {
                    record(nowMicros() - e.timestamp);
                }

                @Override
                public void flush(boolean endOfInput) {}

                @Override
                public void close() {}
            };
        }
    }
}
