package strom.bench.nexmark;

/**
 * One Nexmark event: a person, an auction or a bid (exactly one field is set). Times are
 * epoch milliseconds. {@link #toString()} is the canonical text that Strom's
 * {@code bench/src/nexmark/model.rs} prints too, for the generator checksum.
 */
public final class Event {
    public Person person;
    public Auction auction;
    public Bid bid;

    public static final class Person {
        public long id;
        public String name;
        public String emailAddress;
        public String creditCard;
        public String city;
        public String state;
        public long dateTime;
        public String extra;
    }

    public static final class Auction {
        public long id;
        public String itemName;
        public String description;
        public long initialBid;
        public long reserve;
        public long dateTime;
        public long expires;
        public long seller;
        public long category;
        public String extra;
    }

    public static final class Bid {
        public long auction;
        public long bidder;
        public long price;
        public long dateTime;
        public String extra;
    }

    @Override
    public String toString() {
        if (person != null) {
            Person p = person;
            return "P|" + p.id + "|" + p.name + "|" + p.emailAddress + "|" + p.creditCard + "|" + p.city
                    + "|" + p.state + "|" + p.dateTime + "|" + p.extra;
        }
        if (auction != null) {
            Auction a = auction;
            return "A|" + a.id + "|" + a.itemName + "|" + a.description + "|" + a.initialBid + "|"
                    + a.reserve + "|" + a.dateTime + "|" + a.expires + "|" + a.seller + "|" + a.category
                    + "|" + a.extra;
        }
        Bid b = bid;
        return "B|" + b.auction + "|" + b.bidder + "|" + b.price + "|" + b.dateTime + "|" + b.extra;
    }
}
