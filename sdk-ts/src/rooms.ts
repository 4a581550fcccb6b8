/** Live-room state of one business client: joined rooms and their offsets. */
import type { RoomBatch } from "../gen/pike/channel/v1/channel_pb.js";
import type { RoomDelivery } from "./events.js";

/** One joined room. */
export interface RoomState {
  /** The room name. */
  name: string;
  /** The offset the client continues from; undefined until the first join result. */
  offset: bigint | undefined;
  /** Joined on the current connection. */
  joined: boolean;
  /** When the held pull is given up and sent again (clock ms). */
  pullDeadline: number | undefined;
}

/** The rooms of a client, bounded. */
export class Rooms {
  private readonly rooms = new Map<string, RoomState>();

  /** At most `limit` rooms (the server allows 32 joins per connection). */
  constructor(readonly limit: number) {}

  /** The room, if joined. */
  get(name: string): RoomState | undefined {
    return this.rooms.get(name);
  }

  /** Every room. */
  all(): RoomState[] {
    return [...this.rooms.values()];
  }

  /** Adds a room starting at `from` (undefined: the tail); false when full. */
  add(name: string, from: bigint | undefined): RoomState | undefined {
    const existing = this.rooms.get(name);
    if (existing !== undefined) return existing;
    if (this.rooms.size >= this.limit) return undefined;
    const room: RoomState = { name, offset: from, joined: false, pullDeadline: undefined };
    this.rooms.set(name, room);
    return room;
  }

  /** Forgets a room. */
  remove(name: string): boolean {
    return this.rooms.delete(name);
  }

  /** Marks every room not joined (a connection was lost). */
  onLinkLost(): void {
    for (const r of this.rooms.values()) {
      r.joined = false;
      r.pullDeadline = undefined;
    }
  }
}

/**
 * Applies a batch to a joined room: the messages at or above the room's
 * offset (an offset below it was delivered already: a rejoin, a stale pull
 * answer), and the offset moved to `max(offset, next_offset)`.
 */
export function applyBatch(room: RoomState, batch: RoomBatch): RoomDelivery[] {
  const from = room.offset ?? 0n;
  const fresh = batch.messages
    .filter((m) => m.offset >= from)
    .map((m) => ({ offset: m.offset, roomClass: m.class, priority: m.priority, payload: m.payload }));
  if (batch.nextOffset > from) room.offset = batch.nextOffset;
  return fresh;
}
