// The client registry: which node holds each client id's session, with the claim order that
// settles two nodes claiming one client (SPEC 4: one live connection, one session). Pure state and
// decisions: the cluster sends the Reg/Unreg messages and ends the sessions it is told to yield.

interface RegEntry {
  node: string;
  /**
   * ms when the session opened there, raised above every claim the node knew of then: of two
   * nodes claiming a client, the later one wins (claimBeats).
   */
  at: number;
}

/**
 * The total order on claims every node applies alike: the later `at` wins, a tie goes to the
 * lower node name.
 */
function claimBeats(a: RegEntry, b: RegEntry): boolean {
  return a.at > b.at || (a.at === b.at && a.node < b.node);
}

export class Registry {
  private readonly entries = new Map<string, RegEntry>();
  /** Winning claims on sessions this node was handing over when they came: settled at its end. */
  private readonly deferred = new Map<string, RegEntry>();

  constructor(private readonly self: string) {}

  ownerOf(clientId: string): string | undefined {
    return this.entries.get(clientId)?.node;
  }

  /** A session already here when the node joins a cluster. */
  addLocal(clientId: string, at: number): void {
    this.entries.set(clientId, { node: this.self, at });
  }

  /**
   * Claims the client id for this node; returns the claim's `at` for the Reg. The claim beats
   * every claim known here (a Reg that came while this node was still pulling the session, in the
   * same ms or from a clock ahead): the peer that made it compares it with ours when our Reg
   * arrives and yields, whereas this node will not see the peer's Reg again. Without the raise,
   * an equal `at` could leave both holding it.
   */
  claim(clientId: string, now: number): number {
    let at = now;
    const known = this.entries.get(clientId);
    if (known !== undefined && known.at >= at) at = known.at + 1;
    const deferred = this.deferred.get(clientId);
    if (deferred !== undefined && deferred.at >= at) at = deferred.at + 1;
    this.deferred.delete(clientId);
    this.entries.set(clientId, { node: this.self, at });
    return at;
  }

  /** This node's session ended; returns whether it was registered here (an Unreg goes out). */
  release(clientId: string): boolean {
    if (this.entries.get(clientId)?.node !== this.self) return false;
    this.entries.delete(clientId);
    return true;
  }

  onUnreg(peer: string, clientId: string): void {
    if (this.entries.get(clientId)?.node === peer) this.entries.delete(clientId);
    if (this.deferred.get(clientId)?.node === peer) this.deferred.delete(clientId);
  }

  /**
   * A peer opened a session for a client id. If we hold one too (connects racing on two nodes, or
   * a node back from a crash with an old copy), the later one wins and the other ends. Returns
   * true when ours lost: the caller ends our connection and copy. While `handingOver` the client's
   * session, a winning claim waits for the handover's end (handOverEnded), by the same order.
   */
  onReg(peer: string, clientId: string, at: number, handingOver: boolean): boolean {
    const claim: RegEntry = { node: peer, at };
    const e = this.entries.get(clientId);
    if (e !== undefined && e.node === this.self) {
      // Ours wins: the peer made its claim before ours reached it, so it yields when it does.
      if (!claimBeats(claim, e)) return false;
      if (handingOver) {
        const d = this.deferred.get(clientId);
        if (d === undefined || claimBeats(claim, d)) this.deferred.set(clientId, claim);
        return false;
      }
      this.entries.set(clientId, claim);
      return true;
    }
    if (e === undefined || e.node === peer || e.at <= at) this.entries.set(clientId, claim);
    return false;
  }

  /**
   * A handover of ours ended. A claim that beat ours meanwhile is settled now: if the session
   * stayed here (`kept`), it yields to that claim (returns true: the caller ends ours); if it
   * moved, the claim is what the registry knows until the recipient's Reg comes.
   */
  handOverEnded(clientId: string, kept: boolean): boolean {
    const claim = this.deferred.get(clientId);
    if (claim === undefined) return false;
    this.deferred.delete(clientId);
    const e = this.entries.get(clientId);
    if (e !== undefined && e.node === this.self && kept) {
      if (!claimBeats(claim, e)) return false;
      this.entries.set(clientId, claim);
      return true;
    }
    if (e === undefined || e.at <= claim.at) this.entries.set(clientId, claim);
    return false;
  }

  /** A peer's whole registry (its link came up): returns the client ids whose session here yields. */
  onRegSync(peer: string, regs: ReadonlyArray<[string, number]>, handingOver: (clientId: string) => boolean): string[] {
    this.forget(peer);
    const yielded: string[] = [];
    for (const [clientId, at] of regs) if (this.onReg(peer, clientId, at, handingOver(clientId))) yielded.push(clientId);
    return yielded;
  }

  /** Drops a node's entries and deferred claims (it left, or sends its registry again). */
  forget(node: string): void {
    for (const [clientId, e] of this.entries) if (e.node === node) this.entries.delete(clientId);
    for (const [clientId, e] of this.deferred) if (e.node === node) this.deferred.delete(clientId);
  }

  /** This node's entries, as a RegSync carries them. */
  local(): Array<[string, number]> {
    const regs: Array<[string, number]> = [];
    for (const [clientId, e] of this.entries) if (e.node === this.self) regs.push([clientId, e.at]);
    return regs;
  }

  clear(): void {
    this.entries.clear();
    this.deferred.clear();
  }
}
