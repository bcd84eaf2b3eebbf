-- work: the expensive part of a slow consumer, as a busy wait of 'us'
-- microseconds on the engine clock rather than a loop of so many
-- iterations: a consumer as slow on a fast machine as on a slow one,
-- so that it stays slower than the producer wherever the demo runs.
return function(ctx, us)
  local stop = ctx:now() + us * 1e-6
  while ctx:now() < stop do end
end
