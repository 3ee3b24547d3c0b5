// Message types on an established cluster link. A message is an array whose first element is
// one of these; the rest is positional (compact in msgpack, no field names on the wire).
export const enum Msg {
  Ping = 0,
  /** [RouteAdd, filter, group] */
  RouteAdd = 1,
  /** [RouteDel, filter, group] */
  RouteDel = 2,
  /** [RouteSync, [filter, group][]]: every route of the sender, replacing what we had. */
  RouteSync = 3,
  /** [Forward, groups, ...message]; a message is encoded by message-wire.ts. */
  Forward = 4,
  /** [Reg, clientId, at]: the client's session opened on the sender at `at`. */
  Reg = 5,
  /** [Unreg, clientId] */
  Unreg = 6,
  /** [RegSync, [clientId, at][]]: every client the sender holds. */
  RegSync = 7,
  /** [Retain, ...message]; an empty payload clears. */
  Retain = 8,
  /** [RetainSync, message[]] */
  RetainSync = 9,
  /** [Members, [name, host, port, joinedAt][], [name, removedAt][]] */
  Members = 10,
  /** [Call, id, method, args] */
  Call = 11,
  /** [Reply, id, ok, result or error text] */
  Reply = 12,
  /** [Leave]: the sender leaves the cluster. */
  Leave = 13,
  /** [Removed, name, at]: `name` was removed from the cluster (force-leave). */
  Removed = 14,
}
