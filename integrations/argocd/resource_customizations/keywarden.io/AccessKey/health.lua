-- Argo CD health of a keywarden.io AccessKey, from the conditions the controller writes:
-- Stalled -> Degraded, Reconciling -> Progressing, Ready -> Healthy, deactivated -> Suspended.
local hs = {}
local generation = obj.metadata.generation
local status = obj.status

local function current(condition)
  return generation == nil or condition.observedGeneration == nil
    or condition.observedGeneration >= generation
end

local function find(type)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if condition.type == type and current(condition) then
      return condition
    end
  end
  return nil
end

local function describe(condition)
  return (condition.reason or "") .. ": " .. (condition.message or "")
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

local reconciling = find("Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling)
  return hs
end

local ready = find("Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end
if ready ~= nil and ready.reason == "Deactivated" then
  hs.status = "Suspended"
  hs.message = describe(ready)
  return hs
end

hs.status = "Progressing"
hs.message = "Waiting for the key to be issued"
return hs
