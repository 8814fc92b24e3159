SELECT topic_id, partition, producer_id, first_offset, last_offset FROM kafka.aborted_transactions
