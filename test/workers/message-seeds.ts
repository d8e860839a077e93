// The payload seeds of the messaging tests with several senders (ucx-message-worker.ts,
// test/ucx/message-agent.ts): the i-th message from the sender at position `sender` of the names
// list carries fillPattern(seedOf(sender, i)), so a receiver checks it knowing only its source and
// its order (one pair, one tag: the order is kept).

/** The pattern seed of the i-th message from the sender at position `sender`. */
export const seedOf = (sender: number, i: number): number => (sender * 16 + i) & 0xff;
