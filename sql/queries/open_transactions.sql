SELECT topic_id, partition, producer_id, first_offset FROM kafka.open_transactions
