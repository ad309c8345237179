package strom.bench.nexmark;

import java.util.Map;

/**
 * The Nexmark tables and queries in Flink SQL, as the Nexmark benchmark defines them (its
 * DDL with the {@code dateTime} rowtime and 4 s watermark delay, its views, its query
 * text), over the {@code strom-nexmark} source. Strom's versions are in
 * {@code bench/src/nexmark/queries.rs}.
 */
final class Queries {
    private Queries() {}

    static String table(long events, long eventsPerSecond) {
        return "CREATE TABLE nexmark (\n"
                + "  event_type INT,\n"
                + "  person ROW<id BIGINT, name VARCHAR, emailAddress VARCHAR, creditCard VARCHAR,"
                + " city VARCHAR, state VARCHAR, `dateTime` TIMESTAMP(3), extra VARCHAR>,\n"
                + "  auction ROW<id BIGINT, itemName VARCHAR, description VARCHAR, initialBid BIGINT,"
                + " reserve BIGINT, `dateTime` TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT,"
                + " category BIGINT, extra VARCHAR>,\n"
                + "  bid ROW<auction BIGINT, bidder BIGINT, price BIGINT, `dateTime` TIMESTAMP(3),"
                + " extra VARCHAR>,\n"
                + "  `dateTime` AS CASE WHEN event_type = 0 THEN person.`dateTime`"
                + " WHEN event_type = 1 THEN auction.`dateTime` ELSE bid.`dateTime` END,\n"
                + "  WATERMARK FOR `dateTime` AS `dateTime` - INTERVAL '4' SECOND\n"
                + ") WITH ('connector' = 'strom-nexmark', 'events' = '" + events + "',"
                + " 'events-per-second' = '" + eventsPerSecond + "')";
    }

    static final String[] VIEWS = {
        "CREATE VIEW person AS SELECT person.id, person.name, person.emailAddress, person.creditCard,"
                + " person.city, person.state, `dateTime`, person.extra FROM nexmark WHERE event_type = 0",
        "CREATE VIEW auction AS SELECT auction.id, auction.itemName, auction.description, auction.initialBid,"
                + " auction.reserve, `dateTime`, auction.expires, auction.seller, auction.category, auction.extra"
                + " FROM nexmark WHERE event_type = 1",
        "CREATE VIEW bid AS SELECT bid.auction, bid.bidder, bid.price, `dateTime`, bid.extra"
                + " FROM nexmark WHERE event_type = 2",
    };

    static final Map<String, String> QUERIES = Map.of(
            "q0", "SELECT auction, bidder, price, `dateTime`, extra FROM bid",
            "q1", "SELECT auction, bidder, 0.908 * price AS price, `dateTime`, extra FROM bid",
            "q2", "SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0",
            "q3", "SELECT P.name, P.city, P.state, A.id"
                    + " FROM auction AS A INNER JOIN person AS P ON A.seller = P.id"
                    + " WHERE A.category = 10 AND (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA')",
            "q4", "SELECT Q.category, AVG(Q.final) FROM ("
                    + " SELECT MAX(B.price) AS final, A.category FROM auction A, bid B"
                    + " WHERE A.id = B.auction AND B.`dateTime` BETWEEN A.`dateTime` AND A.expires"
                    + " GROUP BY A.id, A.category"
                    + ") Q GROUP BY Q.category",
            "q5", "SELECT AuctionBids.auction, AuctionBids.num FROM ("
                    + " SELECT auction, count(*) AS num, window_start AS starttime, window_end AS endtime"
                    + " FROM TABLE(HOP(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '2' SECOND, INTERVAL '10' SECOND))"
                    + " GROUP BY auction, window_start, window_end"
                    + ") AS AuctionBids JOIN ("
                    + " SELECT max(CountBids.num) AS maxn, CountBids.starttime, CountBids.endtime FROM ("
                    + "  SELECT count(*) AS num, window_start AS starttime, window_end AS endtime"
                    + "  FROM TABLE(HOP(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '2' SECOND, INTERVAL '10' SECOND))"
                    + "  GROUP BY auction, window_start, window_end"
                    + " ) AS CountBids GROUP BY CountBids.starttime, CountBids.endtime"
                    + ") AS MaxBids"
                    + " ON AuctionBids.starttime = MaxBids.starttime AND AuctionBids.endtime = MaxBids.endtime"
                    + " AND AuctionBids.num >= MaxBids.maxn",
            "q7", "SELECT B.auction, B.price, B.bidder, B.`dateTime`, B.extra FROM bid B JOIN ("
                    + " SELECT MAX(price) AS maxprice, window_end AS `dateTime`"
                    + " FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '10' SECOND))"
                    + " GROUP BY window_start, window_end"
                    + ") B1 ON B.price = B1.maxprice"
                    + " WHERE B.`dateTime` BETWEEN B1.`dateTime` - INTERVAL '10' SECOND AND B1.`dateTime`",
            "q8", "SELECT P.id, P.name, P.starttime FROM ("
                    + " SELECT id, name, window_start AS starttime, window_end AS endtime"
                    + " FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(`dateTime`), INTERVAL '10' SECOND))"
                    + " GROUP BY id, name, window_start, window_end"
                    + ") P JOIN ("
                    + " SELECT seller, window_start AS starttime, window_end AS endtime"
                    + " FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(`dateTime`), INTERVAL '10' SECOND))"
                    + " GROUP BY seller, window_start, window_end"
                    + ") A ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime");
}
