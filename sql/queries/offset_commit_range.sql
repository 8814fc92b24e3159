-- The oldest commit number still stored, and the next number the sequence gives (which
-- never goes back, whatever is deleted).
SELECT (SELECT min(o.commit_number) FROM kafka.consumer_offsets o),
       (SELECT CASE WHEN s.is_called THEN s.last_value + 1 ELSE s.last_value END FROM kafka.offset_commit_numbers s)
