-- A small fake of the rspamd task API, enough to run rspamd.local.lua's From rule under a
-- plain Lua interpreter (LuaJIT, as rspamd uses): rspamd_config:register_symbol keeps the
-- rule's callback; each case is a header block in a file, the task answers get_user,
-- get_raw_headers (rspamd's text object, read with :str()) and get_header_full (names
-- compared without case, folded values kept as sent: rspamd unfolds nothing in "value").
--   luajit rspamd_fake.lua RULE USER HEADER_FILE...   -> one line per case: "pass" or
--   "reject<TAB>reason"
local rule_path, user = arg[1], arg[2]
local symbols = {}
rspamd_config = {
  register_symbol = function(_, symbol)
    symbols[#symbols + 1] = symbol
  end,
}
dofile(rule_path)
assert(#symbols == 1 and symbols[1].type == "prefilter", "one prefilter expected")

local function fields_of(raw)
  local fields = {}
  for line in raw:gmatch("(.-)\r\n") do
    if line == "" then
      break
    end
    local first = line:sub(1, 1)
    if (first == " " or first == "\t") and #fields > 0 then
      fields[#fields].value = fields[#fields].value .. "\r\n" .. line
    else
      local name, value = line:match("^([^:]-)[ \t]*:[ \t]*(.*)$")
      if not name then
        break
      end
      fields[#fields + 1] = { name = name, value = value }
    end
  end
  return fields
end

local function task_of(raw, login)
  local result = nil
  local task = {}
  function task:get_user() return login end
  function task:get_raw_headers()  -- rspamd's text object: its bytes through :str()
    return { str = function() return raw end }
  end
  function task:get_header_full(name)
    local found = {}
    for _, field in ipairs(fields_of(raw)) do
      if field.name:lower() == name:lower() then
        found[#found + 1] = { name = field.name, value = field.value, decoded = field.value }
      end
    end
    return #found > 0 and found or nil
  end
  function task:set_pre_result(action, reason, module)
    result = { action = action, reason = reason, module = module }
  end
  return task, function() return result end
end

for index = 3, #arg do
  local handle = assert(io.open(arg[index], "rb"))
  local raw = handle:read("*a")
  handle:close()
  local task, outcome = task_of(raw, user ~= "" and user or nil)
  local refused = symbols[1].callback(task)
  local result = outcome()
  if refused and result and result.action == "reject" and result.module == "mailhost" then
    print("reject\t" .. result.reason)
  elseif not refused and not result then
    print("pass")
  else
    print("inconsistent")
  end
end
