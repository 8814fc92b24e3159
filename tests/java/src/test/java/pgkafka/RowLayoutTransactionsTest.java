package pgkafka;

import java.util.Map;

/**
 * {@link TransactionsTest} on row-layout topics: a transaction's records are rows that keep
 * their producer, its markers rows of their own, and every scenario reads as on the batch
 * layout.
 */
class RowLayoutTransactionsTest extends TransactionsTest {
    @Override
    protected Map<String, String> layout() {
        return Map.of("pg_kafka.storage", "rows");
    }
}
