package strom.bench.nexmark;

import java.util.Set;

import org.apache.flink.configuration.ConfigOption;
import org.apache.flink.configuration.ConfigOptions;
import org.apache.flink.table.connector.ChangelogMode;
import org.apache.flink.table.connector.source.DynamicTableSource;
import org.apache.flink.table.connector.source.ScanTableSource;
import org.apache.flink.table.connector.source.SourceProvider;
import org.apache.flink.table.factories.DynamicTableSourceFactory;
import org.apache.flink.table.factories.FactoryUtil;

/**
 * The {@code 'connector' = 'strom-nexmark'} table source: {@link NexmarkSource} for SQL, the
 * way Nexmark's own Flink connector feeds its queries (rows straight into the planner's
 * internal format, no conversion from Java objects).
 */
public final class NexmarkTableFactory implements DynamicTableSourceFactory {
    static final ConfigOption<Long> EVENTS = ConfigOptions.key("events").longType().noDefaultValue()
            .withDescription("Number of events to generate.");
    static final ConfigOption<Long> EVENTS_PER_SECOND = ConfigOptions.key("events-per-second").longType()
            .defaultValue(NexmarkGenerator.DEFAULT_EVENTS_PER_SECOND)
            .withDescription("Events per second of event time.");

    @Override
    public String factoryIdentifier() {
        return "strom-nexmark";
    }

    @Override
    public Set<ConfigOption<?>> requiredOptions() {
        return Set.of(EVENTS);
    }

    @Override
    public Set<ConfigOption<?>> optionalOptions() {
        return Set.of(EVENTS_PER_SECOND);
    }

    @Override
    public DynamicTableSource createDynamicTableSource(Context context) {
        FactoryUtil.TableFactoryHelper helper = FactoryUtil.createTableFactoryHelper(this, context);
        helper.validate();
        return new TableSource(helper.getOptions().get(EVENTS), helper.getOptions().get(EVENTS_PER_SECOND));
    }

    static final class TableSource implements ScanTableSource {
        private final long events;
        private final long eventsPerSecond;

        TableSource(long events, long eventsPerSecond) {
            this.events = events;
            this.eventsPerSecond = eventsPerSecond;
        }

        @Override
        public ChangelogMode getChangelogMode() {
            return ChangelogMode.insertOnly();
        }

        @Override
        public ScanRuntimeProvider getScanRuntimeProvider(ScanContext context) {
            return SourceProvider.of(new NexmarkSource(events, eventsPerSecond));
        }

        @Override
        public DynamicTableSource copy() {
            return new TableSource(events, eventsPerSecond);
        }

        @Override
        public String asSummaryString() {
            return "Nexmark(" + events + " events)";
        }
    }
}
