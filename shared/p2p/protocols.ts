/** Protocol ids of damselfly's libp2p protocols. One handler file per protocol. */
export const PROTOCOL_PREFIX = '/damselfly'

/** Daemon → supernode: ask for a blob's task; answered with the piece manifest and its updates. */
export const TASK_PROTOCOL = `${PROTOCOL_PREFIX}/task/1.0.0`

/** Anyone → anyone holding pieces: piece requests and their bytes, one after another on a stream. */
export const PIECE_PROTOCOL = `${PROTOCOL_PREFIX}/piece/2.0.0`

/** kad-dht runs under our own prefix so a damselfly network never joins the public IPFS DHT. */
export const DHT_PROTOCOL = `${PROTOCOL_PREFIX}/kad/1.0.0`

/** Daemon → supernode: announce which pieces of which blobs it holds; answered with peers. */
export const TRACKER_PROTOCOL = `${PROTOCOL_PREFIX}/tracker/1.0.0`

/** Daemon ↔ daemon, one stream per blob and neighbour: bitfields, then `have` messages. */
export const SWARM_PROTOCOL = `${PROTOCOL_PREFIX}/swarm/1.0.0`
