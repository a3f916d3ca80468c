-- Counts spread over many quarters (issue 18). A count says how many people crossed during its
-- period, not when in it. The rollups file it wholly in the quarter of its start, so a count
-- longer than an hour with people in it (a counter's first reading of the day, since midnight;
-- polled totals after hours without an answer) is exact for its day but not for the quarters and
-- hours it spans: filed at its start, it would show its people in one hour and none in the others,
-- each of them "complete".
--
-- `spread` marks those quarters (bit i = quarter i of the local day, as `mask`). They stay in
-- `mask` and `quarters`, so day answers count them as reported (the day's total is exact when the
-- whole period lies in that day); 15-minute and hour answers count only `mask & ~spread` as
-- reported, so those buckets say they are not complete. Upserts OR both masks, like `mask`.
ALTER TABLE sensor_coverage_day
    ADD COLUMN spread bit(128) NOT NULL DEFAULT B'0'::bit(128);
