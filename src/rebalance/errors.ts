// Errors of the rebalance operations. `code` is the reason EMQX reports (`already_started`, ...);
// the message is what the API and CLI show (for validation errors, SPEC 8's exact text).

export type RebalanceErrorCode =
  | 'already_started'
  | 'not_started'
  | 'eviction_agent_busy'
  | 'nothing_to_balance'
  /** A bad option value or name; the message says which. */
  | 'invalid_param'
  /** `:node` is not a cluster member. */
  | 'invalid_node'
  /** The node named is a member but did not answer (RPC failure or timeout). */
  | 'rpc_failed';

export class RebalanceError extends Error {
  constructor(
    readonly code: RebalanceErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'RebalanceError';
  }
}
