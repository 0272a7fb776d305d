-- The calls merge keeps its state with each row, so a new event is folded in without re-reading
-- the call's other events. NULL (every row written before this migration) means "not kept yet":
-- the sink recomputes that row from call_events the first time one of its events arrives, and
-- keeps the state from then on.
ALTER TABLE calls ADD COLUMN merge_state text;
