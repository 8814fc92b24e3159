SELECT nextval('kafka.producer_ids')
