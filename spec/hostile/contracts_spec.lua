-- spec/hostile/contracts_spec.lua -- a contracts file built to be slow
-- (issue 11, item 9): duplicate keys and tags were found by comparing
-- every pair, so 20000 fields took 4.3 s to check and 20000 messages 6.1
-- s.  They are found by sorting now; these files load in well under a
-- second, and the duplicates among them are still all reported.
local cli = require "support.cli"

local HEAD = "schema: {id: 1, version: 1}\n"
  .. "tag_ranges: {core: 1-999, app: 1000-49999, experimental: 50000-65535}\n"
  .. "messages:\n"

-- 'n' messages of one field each (tags 1000...), plus what 'extra' adds.
local function many_messages(n, extra)
  local t = { HEAD }
  for i = 1, n do
    t[#t + 1] = string.format("  M%d:\n    tlv_type: %d\n    fields:\n"
                              .. "      x: {type: u8}\n", i, 1000 + i % 40000)
  end
  t[#t + 1] = extra or ""
  return table.concat(t)
end

-- One message of 'n' one-byte fields, plus what 'extra' adds.
local function many_fields(n, extra)
  local t = { HEAD, "  Wide:\n    tlv_type: 1000\n    fields:\n" }
  for i = 1, n do
    t[#t + 1] = string.format("      f%d: {type: u8}\n", i)
  end
  t[#t + 1] = extra or ""
  return table.concat(t)
end

-- Runs `mycelium check` on 'text'; returns its exit code, output, errors
-- and the CPU seconds it used (user and system, from the shell's `times`:
-- children waited for, the binary included), which a loaded machine
-- stretches far less than wall time.
local function timed_check(dir, name, text)
  local path = dir:write(name, text)
  local times = dir.path .. "/.times"
  local rc, out, err = dir:sh(string.format(
    "timeout 60 %s check %s; rc=$?; times >%s; exit $rc", cli.bin, path, times))
  local f = assert(io.open(times))
  local report = f:read("*a")
  f:close()
  -- second line: the children's user and system time, as "XmY.YYYs"
  local cpu = 0
  local line = report:match("\n([^\n]+)")
  for m, s in line:gmatch("(%d+)m([%d.]+)s") do
    cpu = cpu + tonumber(m) * 60 + tonumber(s)
  end
  return rc, out, err, cpu
end

describe("a contracts file of 20000", function()
  local dir
  before_each(function() dir = cli.tmpdir() end)
  after_each(function() dir:remove() end)

  -- CPU time of the child process.  Pairwise it took 4 to 6 s on the
  -- machine these were measured on; sorted, about 0.1 s.
  local function assert_fast(seconds)
    assert.is_true(seconds <= 2, "took " .. seconds .. " s of CPU")
  end

  it("messages checks in linear time", function()
    local rc, out, err, s = timed_check(dir, "m.yaml", many_messages(20000))
    assert.are.equal(0, rc, err)
    assert.matches("20000 types", out, 1, true)
    assert_fast(s)
  end)

  it("fields checks in linear time", function()
    local rc, out, err, s = timed_check(dir, "f.yaml", many_fields(20000))
    assert.are.equal(0, rc, err)
    assert.matches("1 type", out, 1, true)
    assert_fast(s)
  end)

  it("still reports every duplicate name, key and tag, first line named", function()
    local extra = "  M7:\n    tlv_type: 1007\n    fields: {x: {type: u8}}\n"
      .. "  M7:\n    tlv_type: 60001\n    fields: {x: {type: u8}}\n"
      .. "  Dup:\n    tlv_type: 1005\n    tlv_type: 1006\n    fields: {x: {type: u8}}\n"
    local rc, _, err, s = timed_check(dir, "d.yaml", many_messages(20000, extra))
    assert.are.equal(1, rc)
    assert_fast(s)
    local base = 3 + 20000 * 4 -- lines of the generated part
    assert.matches(string.format("d.yaml:%d: messages: 'M7' defined twice "
                                 .. "(first at line 28)", base + 1), err, 1, true)
    assert.matches(string.format("d.yaml:%d: messages: 'M7' defined twice "
                                 .. "(first at line 28)", base + 4), err, 1, true)
    assert.matches(string.format("d.yaml:%d: Dup: 'tlv_type' defined twice "
                                 .. "(first at line %d)", base + 9, base + 8), err, 1, true)
    -- Tags repeat every 40000: M5 and Dup share 1005 with nobody else first.
    assert.matches(string.format("d.yaml:%d: Dup: tlv_type 1005 is also used "
                                 .. "by M5 (line 20)", base + 7), err, 1, true)
    local rc2, _, err2 = timed_check(dir, "g.yaml", many_fields(20000,
      "      f3: {type: u16}\n      f20000: {type: u8}\n"))
    assert.are.equal(1, rc2)
    assert.matches("Wide: 'f3' defined twice (first at line 9)", err2, 1, true)
    assert.matches("Wide: 'f20000' defined twice (first at line 20006)", err2, 1, true)
  end)
end)
