-- Argo CD health of a keywarden.io AccessKeyPolicy, from the conditions the controller writes:
-- Stalled -> Degraded, Accepted -> Healthy, anything else -> Progressing.
local hs = {}
local generation = obj.metadata.generation
local status = obj.status

local function describe(condition)
  return (condition.reason or "") .. ": " .. (condition.message or "")
end

local function find(type)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    local current = generation == nil or condition.observedGeneration == nil
      or condition.observedGeneration >= generation
    if condition.type == type and current then
      return condition
    end
  end
  return nil
end

if status == nil or status.observedGeneration == nil
    or (generation ~= nil and status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to observe the current spec"
  return hs
end

local stalled = find("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

local accepted = find("Accepted")
if accepted ~= nil and accepted.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(accepted)
  return hs
end

hs.status = "Progressing"
hs.message = "Waiting for the policy to be accepted"
return hs
