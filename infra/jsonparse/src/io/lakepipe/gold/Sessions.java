package io.lakepipe.gold;

import java.math.BigDecimal;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Set;

import org.apache.spark.api.java.function.FlatMapGroupsWithStateFunction;
import org.apache.spark.api.java.function.MapFunction;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.streaming.GroupState;
import org.apache.spark.sql.streaming.GroupStateTimeout;
import org.apache.spark.sql.streaming.OutputMode;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;

/**
 * Sessions with an inactivity gap, kept in Spark's state store per session id (pipelines/engine/gold/sessions.py,
 * {@code state: jvm}): the same sessions as the pandas state, without a Python worker.
 *
 * <p>Input rows (columns by position): {@code session_id} string, {@code user_id} string, {@code t_us} long (the
 * event time in microseconds), {@code page_view} long (0/1), {@code purchase} long (0/1), {@code price} decimal
 * and {@code quantity} long (a purchase's revenue is their exact product; none where either is null). A key's state holds its open sessions, in start order.
 * Each micro-batch merges its events (those at or after the watermark) into them: events or sessions less than
 * the gap apart are one session. Output: every session of each session id the batch touched (current values,
 * {@code retracted} false) and each session that was merged into another ({@code retracted} true), with times in
 * microseconds. A session leaves the state once the watermark passes its end plus the gap.
 */
public final class Sessions implements FlatMapGroupsWithStateFunction<String, Row, Row, Row> {
    private static final long serialVersionUID = 1L;

    static final StructType SESSION = new StructType()
        .add("start_us", DataTypes.LongType, false)
        .add("end_us", DataTypes.LongType, false)
        .add("user_id", DataTypes.StringType, true)
        .add("events", DataTypes.LongType, false)
        .add("page_views", DataTypes.LongType, false)
        .add("purchases", DataTypes.LongType, false)
        .add("revenue", DataTypes.createDecimalType(38, 4), false);
    static final StructType STATE = new StructType().add("sessions", DataTypes.createArrayType(SESSION, false), false);
    static final StructType OUTPUT = new StructType()
        .add("session_id", DataTypes.StringType, true)
        .add("user_id", DataTypes.StringType, true)
        .add("start_us", DataTypes.LongType, false)
        .add("end_us", DataTypes.LongType, false)
        .add("events", DataTypes.LongType, false)
        .add("page_views", DataTypes.LongType, false)
        .add("purchases", DataTypes.LongType, false)
        .add("revenue", DataTypes.createDecimalType(38, 4), false)
        .add("retracted", DataTypes.BooleanType, false);

    private final long gapUs;

    public Sessions(long gapUs) {
        this.gapUs = gapUs;
    }

    /** The sessions of {@code events} (the input columns above, on a watermarked stream), update mode. */
    public static Dataset<Row> sessionize(Dataset<Row> events, long gapUs) {
        return events
            .groupByKey((MapFunction<Row, String>) r -> r.getString(0), Encoders.STRING())
            .flatMapGroupsWithState(new Sessions(gapUs), OutputMode.Update(), Encoders.row(STATE),
                Encoders.row(OUTPUT), GroupStateTimeout.EventTimeTimeout());
    }

    /** One session: mutable while a batch merges. */
    static final class S {
        long start, end, events, pageViews, purchases;
        String userId;
        BigDecimal revenue;

        S(long start, long end, String userId, long events, long pageViews, long purchases, BigDecimal revenue) {
            this.start = start;
            this.end = end;
            this.userId = userId;
            this.events = events;
            this.pageViews = pageViews;
            this.purchases = purchases;
            this.revenue = revenue;
        }

        /** Add {@code later}, which starts at or after this one (the user id stays the first session's). */
        void absorb(S later) {
            end = Math.max(end, later.end);
            events += later.events;
            pageViews += later.pageViews;
            purchases += later.purchases;
            revenue = revenue.add(later.revenue);
        }

        Row toState() {
            return RowFactory.create(start, end, userId, events, pageViews, purchases, revenue);
        }

        Row toOutput(String sessionId, boolean retracted) {
            return RowFactory.create(sessionId, userId, start, end, events, pageViews, purchases, revenue, retracted);
        }
    }

    private static final Comparator<S> ORDER = Comparator.<S>comparingLong(s -> s.start).thenComparingLong(s -> s.end);

    @Override
    public Iterator<Row> call(String sessionId, Iterator<Row> rows, GroupState<Row> state) {
        long watermarkUs = state.getCurrentWatermarkMs() * 1000;
        List<S> open = load(state);
        if (state.hasTimedOut()) {
            save(state, open, watermarkUs);
            return Collections.emptyIterator();
        }
        List<S> all = new ArrayList<>(open);
        boolean fresh = false;
        while (rows.hasNext()) {
            Row r = rows.next();
            long t = r.getLong(2);
            if (t < watermarkUs) {
                continue; // late: left out, like the windowed aggregates
            }
            fresh = true;
            long purchase = r.getLong(4);
            BigDecimal amount = purchase == 1 && !r.isNullAt(5) && !r.isNullAt(6)
                ? r.getDecimal(5).multiply(BigDecimal.valueOf(r.getLong(6))) : BigDecimal.ZERO;
            all.add(new S(t, t, r.getString(1), 1, r.getLong(3), purchase, amount));
        }
        if (!fresh) {
            save(state, open, watermarkUs);
            return Collections.emptyIterator();
        }
        all.sort(ORDER);
        List<S> merged = new ArrayList<>();
        Set<Long> starts = new HashSet<>();
        for (S s : all) {
            S last = merged.isEmpty() ? null : merged.get(merged.size() - 1);
            if (last != null && s.start - last.end < gapUs) {
                last.absorb(s);
            } else {
                S copy = new S(s.start, s.end, s.userId, s.events, s.pageViews, s.purchases, s.revenue);
                merged.add(copy);
                starts.add(copy.start);
            }
        }
        List<Row> out = new ArrayList<>(merged.size() + 1);
        for (S s : merged) {
            out.add(s.toOutput(sessionId, false));
        }
        for (S s : open) {
            if (!starts.contains(s.start)) { // merged into a session that starts earlier: its row goes
                out.add(s.toOutput(sessionId, true));
            }
        }
        save(state, merged, watermarkUs);
        return out.iterator();
    }

    private static List<S> load(GroupState<Row> state) {
        List<S> out = new ArrayList<>();
        if (!state.exists()) {
            return out;
        }
        List<Row> stored = state.get().getList(0);
        for (Row s : stored) {
            out.add(new S(s.getLong(0), s.getLong(1), s.getString(2), s.getLong(3), s.getLong(4), s.getLong(5),
                s.getDecimal(6)));
        }
        return out;
    }

    /** Keep the sessions that can still change (their end plus the gap is past the watermark), sorted by start. */
    private void save(GroupState<Row> state, List<S> sessions, long watermarkUs) {
        List<Row> kept = new ArrayList<>();
        long firstEnd = Long.MAX_VALUE;
        for (S s : sessions) {
            if (s.end > watermarkUs - gapUs) {
                kept.add(s.toState());
                firstEnd = Math.min(firstEnd, s.end);
            }
        }
        if (kept.isEmpty()) {
            state.remove();
            return;
        }
        state.update(RowFactory.create((Object) kept.toArray(new Row[0])));
        state.setTimeoutTimestamp(Math.floorDiv(firstEnd + gapUs, 1000)); // when the first can be dropped
    }
}
