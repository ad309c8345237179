package strom.bench.nexmark;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Iterator;
import java.util.List;

import org.apache.flink.api.connector.source.Boundedness;
import org.apache.flink.api.connector.source.Source;
import org.apache.flink.api.connector.source.SourceReader;
import org.apache.flink.api.connector.source.SourceReaderContext;
import org.apache.flink.api.connector.source.SplitEnumerator;
import org.apache.flink.api.connector.source.SplitEnumeratorContext;
import org.apache.flink.api.connector.source.lib.util.IteratorSourceEnumerator;
import org.apache.flink.api.connector.source.lib.util.IteratorSourceReader;
import org.apache.flink.api.connector.source.lib.util.IteratorSourceSplit;
import org.apache.flink.core.io.SimpleVersionedSerializer;
import org.apache.flink.table.data.GenericRowData;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.data.TimestampData;

/**
 * The Nexmark stream as a Flink source of table rows ({@code event_type, person, auction,
 * bid}, as Nexmark's DDL has them). Like Strom's source, split {@code s} of {@code p} makes
 * events {@code s, s+p, …}: the splits move through event time together and the union is
 * the same at any parallelism.
 */
public final class NexmarkSource implements Source<RowData, NexmarkSource.Split, Collection<NexmarkSource.Split>> {
    private final long events;
    private final long eventsPerSecond;

    public NexmarkSource(long events, long eventsPerSecond) {
        this.events = events;
        this.eventsPerSecond = eventsPerSecond;
    }

    @Override
    public Boundedness getBoundedness() {
        return Boundedness.BOUNDED;
    }

    @Override
    public SourceReader<RowData, Split> createReader(SourceReaderContext context) {
        return new IteratorSourceReader<>(context);
    }

    @Override
    public SplitEnumerator<Split, Collection<Split>> createEnumerator(SplitEnumeratorContext<Split> context) {
        int p = context.currentParallelism();
        List<Split> splits = new ArrayList<>();
        for (int s = 0; s < p; s++) {
            splits.add(new Split(s, s, p, events, eventsPerSecond));
        }
        return new IteratorSourceEnumerator<>(context, splits);
    }

    @Override
    public SplitEnumerator<Split, Collection<Split>> restoreEnumerator(
            SplitEnumeratorContext<Split> context, Collection<Split> remaining) {
        return new IteratorSourceEnumerator<>(context, remaining);
    }

    @Override
    public SimpleVersionedSerializer<Split> getSplitSerializer() {
        return new SplitSerializer();
    }

    @Override
    public SimpleVersionedSerializer<Collection<Split>> getEnumeratorCheckpointSerializer() {
        return new SplitsSerializer();
    }

    /** Events {@code next, next+step, …} below {@code end}. */
    public static final class Split implements IteratorSourceSplit<RowData, Rows> {
        final int id;
        final long next;
        final long step;
        final long end;
        final long eventsPerSecond;

        Split(int id, long next, long step, long end, long eventsPerSecond) {
            this.id = id;
            this.next = next;
            this.step = step;
            this.end = end;
            this.eventsPerSecond = eventsPerSecond;
        }

        @Override
        public String splitId() {
            return Integer.toString(id);
        }

        @Override
        public Rows getIterator() {
            return new Rows(next, step, end, new NexmarkGenerator(eventsPerSecond));
        }

        @Override
        public IteratorSourceSplit<RowData, Rows> getUpdatedSplitForIterator(Rows rows) {
            return new Split(id, rows.next, step, end, eventsPerSecond);
        }
    }

    /** The rows of a split. */
    public static final class Rows implements Iterator<RowData> {
        long next;
        final long step;
        final long end;
        final NexmarkGenerator generator;

        Rows(long next, long step, long end, NexmarkGenerator generator) {
            this.next = next;
            this.step = step;
            this.end = end;
            this.generator = generator;
        }

        @Override
        public boolean hasNext() {
            return next < end;
        }

        @Override
        public RowData next() {
            Event e = generator.event(next);
            next += step;
            return toRow(e);
        }
    }

    /** The row of an event, in the layout of the {@code nexmark} table. */
    public static RowData toRow(Event e) {
        GenericRowData row = new GenericRowData(4);
        if (e.person != null) {
            Event.Person p = e.person;
            row.setField(0, 0);
            row.setField(1, GenericRowData.of(p.id, str(p.name), str(p.emailAddress), str(p.creditCard),
                    str(p.city), str(p.state), time(p.dateTime), str(p.extra)));
        } else if (e.auction != null) {
            Event.Auction a = e.auction;
            row.setField(0, 1);
            row.setField(2, GenericRowData.of(a.id, str(a.itemName), str(a.description), a.initialBid,
                    a.reserve, time(a.dateTime), time(a.expires), a.seller, a.category, str(a.extra)));
        } else {
            Event.Bid b = e.bid;
            row.setField(0, 2);
            row.setField(3, GenericRowData.of(b.auction, b.bidder, b.price, time(b.dateTime), str(b.extra)));
        }
        return row;
    }

    private static StringData str(String s) {
        return StringData.fromString(s);
    }

    private static TimestampData time(long millis) {
        return TimestampData.fromEpochMillis(millis);
    }

    static final class SplitSerializer implements SimpleVersionedSerializer<Split> {
        @Override
        public int getVersion() {
            return 1;
        }

        @Override
        public byte[] serialize(Split s) throws IOException {
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            DataOutputStream out = new DataOutputStream(bytes);
            write(s, out);
            out.flush();
            return bytes.toByteArray();
        }

        @Override
        public Split deserialize(int version, byte[] serialized) throws IOException {
            return read(new DataInputStream(new ByteArrayInputStream(serialized)));
        }

        static void write(Split s, DataOutputStream out) throws IOException {
            out.writeInt(s.id);
            out.writeLong(s.next);
            out.writeLong(s.step);
            out.writeLong(s.end);
            out.writeLong(s.eventsPerSecond);
        }

        static Split read(DataInputStream in) throws IOException {
            return new Split(in.readInt(), in.readLong(), in.readLong(), in.readLong(), in.readLong());
        }
    }

    static final class SplitsSerializer implements SimpleVersionedSerializer<Collection<Split>> {
        @Override
        public int getVersion() {
            return 1;
        }

        @Override
        public byte[] serialize(Collection<Split> splits) throws IOException {
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            DataOutputStream out = new DataOutputStream(bytes);
            out.writeInt(splits.size());
            for (Split s : splits) {
                SplitSerializer.write(s, out);
            }
            out.flush();
            return bytes.toByteArray();
        }

        @Override
        public Collection<Split> deserialize(int version, byte[] serialized) throws IOException {
            DataInputStream in = new DataInputStream(new ByteArrayInputStream(serialized));
            int n = in.readInt();
            List<Split> splits = new ArrayList<>(n);
            for (int i = 0; i < n; i++) {
                splits.add(SplitSerializer.read(in));
            }
            return splits;
        }
    }
}
