-- mycelium.msg -- message views over engine frames.
--
-- The message a handler gets is a table of its own whose fields are read
-- lazily from the frame being handled: nothing is copied or decoded unless
-- the handler asks for it.  It is valid only during its handler;
-- msg:copy() returns a view that keeps its own reference to the frame.
local ffi = require "ffi"
local bit = require "bit"
local cdefs = require "mycelium.cdefs"

local C = cdefs.library()
local band, bnot = bit.band, bit.bnot
local tonumber, setmetatable, getmetatable, rawset, error, tostring =
  tonumber, setmetatable, getmetatable, rawset, error, tostring
local ffi_string, ffi_cast = ffi.string, ffi.cast

local HDR = cdefs.HDR_OFFSET
local FRAME = cdefs.FRAME_SIZE
local KIND_NAMES = { [1] = "raw", [2] = "table", [3] = "typed" }
local u8p = ffi.typeof("const uint8_t *")

local M = {}

local function base(b)
  return ffi_cast(u8p, b) + HDR
end

local function payload(b)
  return base(b) + FRAME, tonumber(b.hdr.payload_len)
end

-- The topic follows the payload, padded to 8 bytes (engine/src/core/buf.h).
local function topic_ptr(b)
  return base(b) + FRAME + band(b.hdr.payload_len + 7, bnot(7))
end
M.payload = payload

local hexbuf = ffi.new("char[32]")
local function hex(p, n)
  C.myc_ffi_hex(hexbuf, p, n)
  return ffi_string(hexbuf, 2 * n)
end
M.hex = hex

-- Builds the field readers.  'env' supplies what depends on the Lua state:
-- env.unpack(ptr, len) decodes MessagePack, env.typed(b, ptr, len, kept)
-- returns the view of a contract message (for a msg:copy() if 'kept')
-- and env.type_name(tag) its type name.
local function readers(env)
  local topics = {} -- topic id -> name, filled as topics are seen
  local R = {}
  function R.topic(b)
    local id = b.topic_id
    local name = topics[id]
    if name == nil then
      name = ffi_string(topic_ptr(b), b.hdr.topic_len)
      topics[id] = name
    end
    return name
  end
  function R.type(b)
    local k = b.hdr.kind
    if k == 3 then
      return env.type_name(b.hdr.type)
    end
    return KIND_NAMES[k] or "unknown"
  end
  -- 'kept': for a msg:copy(), which holds the frame (a typed view then
  -- needs no check that its handler is still running).
  function R.data(b, kept)
    local k = b.hdr.kind
    local p, n = payload(b)
    if k == 1 then
      return ffi_string(p, n)
    elseif k == 2 then
      return env.unpack(p, n)
    end
    return env.typed(b, p, n, kept)
  end
  function R.trace_id(b) return hex(b.hdr.trace_id, 16) end
  function R.span_id(b) return hex(b.hdr.span_id, 8) end
  function R.parent_span_id(b) return hex(b.hdr.parent_id, 8) end
  function R.ts(b) return tonumber(b.hdr.ts_ns) / 1e9 end
  function R.seq(b) return tonumber(b.hdr.seq) end
  function R.source(b)
    local h = b.hdr
    return ffi_string(topic_ptr(b) + h.topic_len, h.source_len)
  end
  return R
end
M.readers = readers

-- The messages of a service's dispatch loop.  'view' is the service's
-- myc_svc_view; 'keep(b)' takes a reference and returns the cdata to
-- anchor (with its finaliser) in a copy.  Returns next_msg() (the message
-- for the handler about to run, at view.cursor), new_batch() and the
-- readers.
--
-- Each handler gets a table of its own, holding only the number of its
-- handler call (_g), its fields read lazily from the frame: one kept past
-- its handler is told apart from the current one, and raises instead of
-- showing a later message.  Nothing refers to the table but the handler,
-- so the JIT can leave it unallocated when the handler does not keep it.
function M.current(view, env, keep)
  local R = readers(env)
  local gen = 0 -- the handler call running, or a number none has
  local memo_gen, memo_data = -1, nil
  local methods = {}
  local kept_mt

  local function buf_of(m, level)
    local i = view.cursor
    if m._g ~= gen or i < 0 then
      error("msg used outside its handler (keep it with msg:copy())",
            level + 1)
    end
    return view.batch[i]
  end

  local mt = {
    __index = function(m, k)
      local r = R[k]
      if r == nil then
        return methods[k]
      end
      local b = buf_of(m, 2)
      -- A typed view is a pointer cast: not memoising it lets the JIT
      -- keep it in registers instead of allocating it.
      if k ~= "data" or b.hdr.kind == 3 then
        return r(b)
      end
      -- Decoding can be costly: once per message however often it is read.
      if memo_gen ~= gen then
        memo_data, memo_gen = r(b), gen
      end
      return memo_data
    end,
    __newindex = function(_, k)
      error("msg is read-only (field '" .. tostring(k) .. "')", 2)
    end,
  }

  function methods.bytes(m)
    local b = getmetatable(m) == mt and buf_of(m, 2) or m._b
    return payload(b)
  end

  -- Whether a request was answered, shared by the message and its
  -- copies (ctx:reply answers once).  Reused from one message to the
  -- next unless a copy holds it: a reply per request without a table.
  local rs_gen, rs, rs_kept = -1, { done = false }, false
  local function reply_state()
    if rs_gen ~= gen then
      if rs_kept then rs, rs_kept = { done = false }, false end
      rs_gen, rs.done = gen, false
    end
    return rs
  end

  function methods.copy(m)
    if getmetatable(m) == mt then
      local b = buf_of(m, 2)
      local s = reply_state()
      rs_kept = true
      return setmetatable({ _b = keep(b), _rs = s }, kept_mt)
    end
    return setmetatable({ _b = keep(m._b), _rs = m._rs }, kept_mt)
  end

  -- The frame of 'm' and its reply state (mycelium.request).
  function methods._request(m)
    if getmetatable(m) == mt then
      return buf_of(m, 2), reply_state()
    end
    local s = m._rs
    if s == nil then
      s = { done = false }
      rawset(m, "_rs", s)
    end
    return m._b, s
  end

  kept_mt = {
    __index = function(m, k)
      local r = R[k]
      if r == nil then
        return methods[k]
      end
      local v = r(m._b, true)
      rawset(m, k, v)
      return v
    end,
  }

  local function next_msg()
    gen = gen + 1
    return setmetatable({ _g = gen }, mt)
  end

  -- Called by the dispatch loop once per batch: the last message of the
  -- previous batch is no longer current (nor its memoised data).
  local function new_batch()
    gen, memo_data = gen + 1, nil
  end

  return next_msg, new_batch, R
end

-- A plain table with every field of frame 'b' (what mycelium.testing
-- returns), read through readers 'R': nothing in it refers to engine
-- memory.
function M.materialize(R, b)
  local t = {}
  for k, r in pairs(R) do
    t[k] = r(b)
  end
  local p, n = payload(b)
  t.raw = ffi_string(p, n)
  return t
end

return M
