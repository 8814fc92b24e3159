package pgkafka;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.List;
import java.util.Map;

import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.connector.Task;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.sink.SinkConnector;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.sink.SinkTask;
import org.apache.kafka.connect.source.SourceConnector;
import org.apache.kafka.connect.source.SourceRecord;
import org.apache.kafka.connect.source.SourceTask;

/**
 * A file source and sink for Kafka Connect, written against connect-api (Kafka's own
 * connect-file is not served here): the source sends each line of a file to a topic and
 * stores the line number as its offset; the sink appends each record's value to a file.
 * Found by Connect through META-INF/services (plugin.discovery=service_load).
 */
public final class LineFileConnectors {
    private LineFileConnectors() {}

    static final String FILE = "file";
    static final String TOPIC = "topic";

    private static ConfigDef configDef() {
        return new ConfigDef()
                .define(FILE, ConfigDef.Type.STRING, ConfigDef.Importance.HIGH, "the file to read or append to")
                .define(TOPIC, ConfigDef.Type.STRING, "", ConfigDef.Importance.HIGH, "the topic the source writes to");
    }

    /** Lines of a file to a topic; the source offset is the number of lines sent. */
    public static class Source extends SourceConnector {
        private Map<String, String> props;

        @Override
        public void start(Map<String, String> props) {
            this.props = props;
        }

        @Override
        public Class<? extends Task> taskClass() {
            return SourceLines.class;
        }

        @Override
        public List<Map<String, String>> taskConfigs(int maxTasks) {
            return List.of(props);
        }

        @Override
        public void stop() {}

        @Override
        public ConfigDef config() {
            return configDef();
        }

        @Override
        public String version() {
            return "1.0";
        }
    }

    public static class SourceLines extends SourceTask {
        private String file;
        private String topic;
        private long sent;

        @Override
        public void start(Map<String, String> props) {
            file = props.get(FILE);
            topic = props.get(TOPIC);
            Map<String, Object> offset = context.offsetStorageReader().offset(Map.of(FILE, file));
            sent = offset == null ? 0 : ((Number) offset.get("lines")).longValue();
        }

        @Override
        public List<SourceRecord> poll() throws InterruptedException {
            List<String> lines = readLines(Path.of(file));
            if (lines.size() <= sent) {
                Thread.sleep(100);
                return null;
            }
            List<SourceRecord> records = new ArrayList<>();
            for (long i = sent; i < lines.size(); i++) {
                records.add(new SourceRecord(Map.of(FILE, file), Map.of("lines", i + 1), topic, null, Schema.STRING_SCHEMA,
                        lines.get((int) i)));
            }
            sent = lines.size();
            return records;
        }

        @Override
        public void stop() {}

        @Override
        public String version() {
            return "1.0";
        }
    }

    /** Records' values appended to a file, a line each. */
    public static class Sink extends SinkConnector {
        private Map<String, String> props;

        @Override
        public void start(Map<String, String> props) {
            this.props = props;
        }

        @Override
        public Class<? extends Task> taskClass() {
            return SinkLines.class;
        }

        @Override
        public List<Map<String, String>> taskConfigs(int maxTasks) {
            return Collections.nCopies(maxTasks, props);
        }

        @Override
        public void stop() {}

        @Override
        public ConfigDef config() {
            return configDef();
        }

        @Override
        public String version() {
            return "1.0";
        }
    }

    public static class SinkLines extends SinkTask {
        private Path file;

        @Override
        public void start(Map<String, String> props) {
            file = Path.of(props.get(FILE));
        }

        @Override
        public void put(Collection<SinkRecord> records) {
            StringBuilder lines = new StringBuilder();
            records.forEach(r -> lines.append(r.value()).append('\n'));
            // Tasks of both workers share the test's JVM and the file.
            synchronized (LineFileConnectors.class) {
                try {
                    Files.writeString(file, lines, StandardCharsets.UTF_8, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
            }
        }

        @Override
        public void stop() {}

        @Override
        public String version() {
            return "1.0";
        }
    }

    /** The whole lines of a file (none if it does not exist yet). */
    static List<String> readLines(Path path) {
        synchronized (LineFileConnectors.class) {
            try {
                return Files.exists(path) ? Files.readAllLines(path, StandardCharsets.UTF_8) : List.of();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
    }
}
